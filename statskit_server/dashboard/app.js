/* statskit KPI dashboard: plain JavaScript over /api/v1 (the offspot metrics API) and Chart.js.
 *
 * State lives in the URL hash (#/popularity?kind=W&value=2024%20W18), so a reload or a shared
 * link shows the same view. Every text from the API is set with textContent (never as HTML).
 * document.body.dataset.state is "loading", "ready" or "error", and dataset.renders counts the
 * views drawn (what the browser test waits for).
 */
"use strict";

(function () {
  const API = new URL("../api/v1/", document.currentScript.src);
  const KINDS = ["D", "W", "M", "Y"];
  const KIND_NAMES = { D: "Day", W: "Week", M: "Month", Y: "Year" };
  const POPULARITY = 2001, USAGE = 2003, UPTIME = 2004, FILES = 2005;
  // Colour-blind friendly (Okabe-Ito, then Tableau); a package keeps its colour everywhere.
  const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
    "#4E79A7", "#B07AA1", "#9C755F", "#76B7B2", "#EDC948"];
  const ON = "#009E73", OFF = "#E4E7EB";

  const cache = {};   // kind -> the promise of /aggregations/{kind}
  let charts = [];
  let renderSerial = 0;

  Chart.defaults.animation = false;  // a phone on a hotspot: draw once, at once
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;

  const colours = {};  // package -> colour, assigned once over every package of every kind

  function hashOf(name) {
    let hash = 2166136261;  // FNV-1a
    for (let i = 0; i < name.length; i++) {
      hash ^= name.charCodeAt(i);
      hash = Math.imul(hash, 16777619) >>> 0;
    }
    return hash;
  }

  // Each package takes the palette slot its name hashes to, or the next free one (names in
  // order), so a package keeps its colour on every page, period and kind, and two packages
  // shown together never share one while the palette lasts.
  function assignColours(aggregations) {
    const names = new Set();
    aggregations.forEach(function (agg) {
      agg.kpis.forEach(function (kpi) {
        kpi.values.forEach(function (v) { (v.kpiValue.items || []).forEach(function (item) { if (item.package) names.add(item.package); }); });
      });
    });
    const used = new Set(Object.values(colours));
    Array.from(names).sort().forEach(function (name) {
      if (colours[name]) return;
      let slot = hashOf(name) % PALETTE.length;
      for (let tries = 0; used.has(PALETTE[slot]) && tries < PALETTE.length; tries++) slot = (slot + 1) % PALETTE.length;
      colours[name] = used.has(PALETTE[slot]) ? "hsl(" + (hashOf(name) % 360) + " 55% 50%)" : PALETTE[slot];
      used.add(colours[name]);
    });
  }

  function colourOf(name) { return colours[name] || "#7b8794"; }

  function hours(minutes) { return (minutes / 60).toFixed(1); }
  function percent(part, whole) { return whole > 0 ? Math.round(part * 100 / whole) : 0; }

  function daysIn(kind, value) {
    if (kind === "D") return 1;
    if (kind === "W") return 7;
    const year = Number(value.slice(0, 4));
    if (kind === "M") return new Date(Date.UTC(year, Number(value.slice(5, 7)), 0)).getUTCDate();
    return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 366 : 365;
  }

  function parseHash() {
    const [path, query] = (location.hash.replace(/^#/, "") || "/").split("?");
    const params = new URLSearchParams(query || "");
    const view = { "/popularity": "popularity", "/usage": "usage" }[path] || "dashboard";
    const kind = KINDS.includes(params.get("kind")) ? params.get("kind") : "D";
    return { view: view, kind: kind, value: params.get("value") };
  }

  function go(view, kind, value) {
    const params = new URLSearchParams({ kind: kind });
    if (value) params.set("value", value);
    location.hash = "#/" + (view === "dashboard" ? "" : view) + "?" + params.toString();
  }

  function load(kind) {
    if (!cache[kind]) {
      cache[kind] = fetch(new URL("aggregations/" + encodeURIComponent(kind), API), { headers: { Accept: "application/json" } })
        .then(function (resp) {
          if (!resp.ok) throw new Error("the KPI API answered " + resp.status);
          return resp.json();
        });
      cache[kind].catch(function () { delete cache[kind]; });  // try again on the next render
    }
    return cache[kind];
  }

  function valueOf(aggregation, kpiId, aggValue) {
    const kpi = aggregation.kpis.find(function (k) { return k.kpiId === kpiId; });
    const found = kpi && kpi.values.find(function (v) { return v.aggValue === aggValue; });
    return found ? found.kpiValue : null;
  }

  function field(root, name) { return root.querySelector('[data-field="' + name + '"]'); }
  function setText(root, name, text) { field(root, name).textContent = String(text); }

  function showNoData(tile, nodata) {
    tile.querySelector(".content").hidden = nodata;
    tile.querySelector(".nodata").hidden = !nodata;
    tile.classList.toggle("empty", nodata);
  }

  function addChart(canvas, config) {
    config.options = Object.assign({ responsive: true, maintainAspectRatio: false }, config.options || {});
    charts.push(new Chart(canvas, config));
  }

  function barList(list, items, key, total, format) {
    const template = document.getElementById("tpl-bar");
    const top = items.length ? items[0][key] : 0;
    items.forEach(function (item) {
      const li = template.content.firstElementChild.cloneNode(true);
      li.querySelector(".swatch").style.backgroundColor = colourOf(item.package);
      li.querySelector(".name").textContent = item.package;
      li.querySelector(".num").textContent = format(item[key], total);
      const fill = li.querySelector(".fill");
      fill.style.width = (top > 0 ? item[key] * 100 / top : 0) + "%";
      fill.style.backgroundColor = colourOf(item.package);
      list.appendChild(li);
    });
  }

  function renderDashboard(main, agg, kind, value) {
    main.appendChild(document.getElementById("tpl-dashboard").content.cloneNode(true));

    const uptimeTile = main.querySelector("#tile-uptime");
    const uptime = value && valueOf(agg, UPTIME, value);
    showNoData(uptimeTile, !uptime);
    if (uptime) {
      const periodMinutes = daysIn(kind, value) * 1440;
      const on = Math.min(uptime.nbMinutesOn, periodMinutes);
      setText(uptimeTile, "uptime-percent", (on * 100 / periodMinutes).toFixed(1) + " %");
      setText(uptimeTile, "uptime-hours", hours(uptime.nbMinutesOn));
      setText(uptimeTile, "uptime-period-hours", periodMinutes / 60);
      addChart(uptimeTile.querySelector("canvas"), {
        type: "doughnut",
        data: { labels: ["on", "off"], datasets: [{ data: [on, periodMinutes - on], backgroundColor: [ON, OFF], borderWidth: 0 }] },
        options: { cutout: "72%", plugins: { legend: { display: false }, tooltip: { enabled: false } } },
      });
    }

    const usageTile = main.querySelector("#tile-usage");
    const usage = value && valueOf(agg, USAGE, value);
    showNoData(usageTile, !usage);
    if (usage) {
      setText(usageTile, "usage-hours", hours(usage.totalMinutesActivity));
      barList(field(usageTile, "usage-top"), usage.items.slice(0, 6), "minutesActivity", usage.totalMinutesActivity,
        function (minutes) { return hours(minutes) + " h"; });
    }

    const popularityTile = main.querySelector("#tile-popularity");
    const popularity = value && valueOf(agg, POPULARITY, value);
    showNoData(popularityTile, !popularity);
    if (popularity) {
      setText(popularityTile, "popularity-total", popularity.totalVisits);
      barList(field(popularityTile, "popularity-top"), popularity.items.slice(0, 5), "visits", popularity.totalVisits,
        function (visits, total) { return percent(visits, total) + " %"; });
    }

    const filesTile = main.querySelector("#tile-files");
    const files = value && valueOf(agg, FILES, value);
    showNoData(filesTile, !files);
    if (files) {
      setText(filesTile, "files-created", files.filesCreated);
      setText(filesTile, "files-deleted", files.filesDeleted);
      const series = agg.valuesAll.map(function (v) { return valueOf(agg, FILES, v); });
      addChart(filesTile.querySelector("canvas"), {
        type: "line",
        data: {
          labels: agg.valuesAll,
          datasets: [
            { label: "created", data: series.map(function (s) { return s ? s.filesCreated : 0; }), borderColor: PALETTE[0], backgroundColor: PALETTE[0] },
            { label: "deleted", data: series.map(function (s) { return s ? s.filesDeleted : 0; }), borderColor: PALETTE[5], backgroundColor: PALETTE[5] },
          ],
        },
        options: {
          scales: {
            y: { beginAtZero: true, ticks: { precision: 0 } },
            // 05-07 for a day, W19 for a week: the year is in the toolbar
            x: { ticks: { maxRotation: 0, callback: function (v) { const l = this.getLabelForValue(v); return kind === "D" || kind === "W" ? l.slice(5) : l; } } },
          },
          plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
        },
      });
    }
  }

  function renderDetail(main, agg, kind, value, which) {
    main.appendChild(document.getElementById("tpl-detail").content.cloneNode(true));
    const tile = main.querySelector(".detail");
    const popular = which === "popularity";
    tile.id = popular ? "detail-popularity" : "detail-usage";
    tile.dataset.kpi = popular ? POPULARITY : USAGE;
    setText(tile, "title", popular ? "Package popularity" : "Total usage");
    setText(tile, "measure", popular ? "Visits" : "Hours");
    // usage: a share of the active time (packages used in the same 10 minutes add up past 100)
    setText(tile, "share", popular ? "% of visits" : "% of time");
    const data = value && valueOf(agg, popular ? POPULARITY : USAGE, value);
    showNoData(tile, !data || !data.items.length);
    if (!data || !data.items.length) return;
    const key = popular ? "visits" : "minutesActivity";
    const total = popular ? data.totalVisits : data.totalMinutesActivity;
    setText(tile, "summary", popular ? total + " home visits" : hours(total) + " h of activity (all packages)");
    const shown = function (n) { return popular ? n : Number(hours(n)); };
    const rows = field(tile, "rows");
    data.items.forEach(function (item) {
      const tr = rows.insertRow();
      tr.insertCell().textContent = item.package;
      tr.insertCell().textContent = popular ? item[key] : hours(item[key]);
      tr.insertCell().textContent = percent(item[key], total);
      tr.cells[0].classList.add("name");
    });
    const colours = data.items.map(function (item) { return colourOf(item.package); });
    const canvas = tile.querySelector("canvas");
    canvas.setAttribute("aria-label", popular ? "Home visits per package" : "Hours of use per package");
    addChart(canvas, {
      type: "bar",
      data: {
        labels: data.items.map(function (item) { return item.package; }),
        datasets: [{ label: popular ? "visits" : "hours", data: data.items.map(function (item) { return shown(item[key]); }),
          backgroundColor: colours, borderColor: colours }],
      },
      options: { indexAxis: "y", plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true } } },
    });
  }

  function renderToolbar(state, agg, value) {
    document.querySelectorAll("[data-kind]").forEach(function (button) {
      button.setAttribute("aria-pressed", String(button.dataset.kind === state.kind));
      button.onclick = function () { go(state.view, button.dataset.kind, null); };  // a kind starts at its latest
    });
    document.querySelectorAll("nav [data-view]").forEach(function (a) {
      a.href = "#/" + (a.dataset.view === "dashboard" ? "" : a.dataset.view) + "?kind=" + state.kind + (value ? "&value=" + encodeURIComponent(value) : "");
      if (a.dataset.view === state.view) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    });
    const available = agg ? agg.valuesAvailable : [];
    const index = available.indexOf(value);
    const prev = document.getElementById("prev"), next = document.getElementById("next");
    prev.disabled = index <= 0;
    next.disabled = index < 0 || index >= available.length - 1;
    prev.onclick = function () { if (index > 0) go(state.view, state.kind, available[index - 1]); };
    next.onclick = function () { if (index >= 0 && index < available.length - 1) go(state.view, state.kind, available[index + 1]); };
    document.getElementById("period-label").textContent = value ? KIND_NAMES[state.kind] + " " + value : "No " + KIND_NAMES[state.kind].toLowerCase() + " yet";
    const csv = document.getElementById("csv");
    csv.hidden = !value;
    if (value) {
      const params = new URLSearchParams({ agg_kind: state.kind, from: value, to: value });
      if (state.view === "popularity") params.set("kpi_id", POPULARITY);
      if (state.view === "usage") params.set("kpi_id", USAGE);
      csv.href = new URL("export?" + params.toString(), API).href;
    }
  }

  function render() {
    const serial = ++renderSerial;
    const state = parseHash();
    document.body.dataset.state = "loading";
    Promise.all(KINDS.map(load)).then(function (all) {
      if (serial !== renderSerial) return;  // a newer hash change is being drawn
      assignColours(all);
      const agg = all[KINDS.indexOf(state.kind)];
      const available = agg.valuesAvailable;
      const value = available.includes(state.value) ? state.value : available[available.length - 1] || null;
      charts.forEach(function (chart) { chart.destroy(); });
      charts = [];
      const main = document.getElementById("view");
      main.textContent = "";  // (replaceChildren() is missing on older phones)
      document.getElementById("error").hidden = true;
      renderToolbar(state, agg, value);
      if (state.view === "dashboard") renderDashboard(main, agg, state.kind, value);
      else renderDetail(main, agg, state.kind, value, state.view);
      document.body.dataset.view = state.view;
      document.body.dataset.renders = String(serial);
      document.body.dataset.state = "ready";
    }).catch(function (error) {
      if (serial !== renderSerial) return;
      renderToolbar(state, null, null);
      const box = document.getElementById("error");
      box.textContent = "Could not load the KPIs (" + error.message + "). Reload the page to try again.";
      box.hidden = false;
      document.body.dataset.renders = String(serial);
      document.body.dataset.state = "error";
    });
  }

  window.addEventListener("hashchange", render);
  render();
})();
