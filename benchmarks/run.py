"""Every benchmark in one run: ``python benchmarks/run.py [--quick] [--only SCRIPT ...]``.

Each script prints its own figures as ratios against a baseline measured in the same run
(the machines are shared and noisy; absolute times mean little) and hands them to run.py as
records (``benchmarks/report.py``). run.py then prints one table of every figure with its goal
and writes it, with a description of the machine, to ``benchmarks/results.md`` and
``benchmarks/results.json``. A script that fails or runs out of time is a "failed" row and makes
run.py exit 1; the others still run. Every script is bounded in time and stops the servers it
starts by PID. ``--quick`` shortens the load runs and sizes (``QUICK`` below).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from report import ENV  # noqa: E402

SCRIPTS = ["harness.py", "bench_client.py", "bench_oneshot.py", "bench_grafana.py", "bench_influxdb.py", "bench_redis.py",
           "bench_kpi.py", "bench_durable.py", "bench_telemetry.py", "bench_telemetry_queries.py"]
QUICK: Dict[str, List[str]] = {  # the goals' own sizes where they are cheap enough, else smaller
    "harness.py": ["--quick"], "bench_redis.py": ["--quick"], "bench_durable.py": ["--quick"],
    "bench_telemetry.py": ["--quick"], "bench_client.py": ["--number", "50000", "--rounds", "5"],
    "bench_oneshot.py": ["--rounds", "3"], "bench_grafana.py": ["--rounds", "3"],
    "bench_influxdb.py": ["--total", "200000"], "bench_kpi.py": ["--lines", "200000", "--requests", "200"],
    "bench_telemetry_queries.py": ["--messages", "200000", "--requests", "200"],
}
TIMEOUT = 1200  # seconds per script
COLUMNS = ["benchmark", "measure", "statskit", "baseline", "ratio", "goal", "met"]


def _number(value: Optional[float], unit: str = "") -> str:
    if value is None:
        return ""
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}".strip()


def _goal(row: Dict[str, Any]) -> str:
    if row.get("goal") is None:
        return ""
    sign = ">=" if row["goal_kind"] == "min" else "<="
    if row["goal_on"] == "ratio":
        return f"ratio {sign} {row['goal']:g}"
    return f"{sign} {_number(row['goal'], row['unit'])}"


def cells(row: Dict[str, Any]) -> List[str]:
    """A record as the table's columns."""
    if row.get("failed"):
        return [row["benchmark"], row["measure"], "failed", "", "", "", "FAILED"]
    met = {True: "yes", False: "NO", None: ""}[row.get("met")]
    ratio = "" if row.get("ratio") is None else f"{row['ratio']:.2f}"
    return [row["benchmark"], row["measure"], _number(row["value"], row["unit"]),
            _number(row.get("baseline"), row["unit"]), ratio, _goal(row), met]


def table(rows: List[Dict[str, Any]], markdown: bool) -> str:
    grid = [COLUMNS] + [cells(r) for r in rows]
    if markdown:
        escape = [[c.replace("|", "\\|") for c in line] for line in grid]
        lines = ["| " + " | ".join(line) + " |" for line in escape]
        return "\n".join(lines[:1] + ["|" + "---|" * len(COLUMNS)] + lines[1:])
    widths = [max(len(line[i]) for line in grid) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in grid)


def _run(command: List[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "not found"


def machine(quick: bool) -> Dict[str, Any]:
    """What the figures were measured on (Linux /proc), the versions that matter, and when."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else "MemTotal: 0 kB"
    mem_kib = int(next(line for line in meminfo.splitlines() if line.startswith("MemTotal")).split()[1])

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    git = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    commit = git.stdout.strip() if git.returncode == 0 else "unknown (not a git checkout)"
    dirty = subprocess.run(["git", "-C", str(HERE), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return {
        "cpu": models[0] if models else platform.processor(), "cpus": len(models) or os.cpu_count(),
        "memory": f"{mem_kib / 2**20:.1f} GiB", "kernel": platform.release(), "python": platform.python_version(),
        "gunicorn": version("gunicorn"), "falcon": version("falcon"), "prometheus_client": version("prometheus-client"),
        "influxdb": _run(["influxd", "version"]), "redis-server": _run(["redis-server", "--version"]),
        "wrk": _run(["wrk", "-v"]), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit + (" (with uncommitted changes)" if dirty else ""), "quick": quick,
    }


def run_script(name: str, quick: bool) -> List[Dict[str, Any]]:
    """Run one script (its output passes through) and return its records, or a "failed" row."""
    args = QUICK.get(name, []) if quick else []
    print(f"== {name} {' '.join(args)}", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="statskit-bench-") as tmp:
        records = Path(tmp) / "records.jsonl"
        records.touch()
        # its own process group, so that a script out of time is stopped with the servers it started
        proc = subprocess.Popen([sys.executable, str(HERE / name), *args], env={**os.environ, ENV: str(records)},
                                start_new_session=True)
        try:
            code = proc.wait(TIMEOUT)
            why = f"exit {code}" if code else ""
        except subprocess.TimeoutExpired:
            why = f"timed out after {TIMEOUT} s"
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)  # the group led by the script's own PID
                    proc.wait(20)
                    break
                except subprocess.TimeoutExpired:
                    continue
                except ProcessLookupError:
                    break
        rows = [json.loads(line) for line in records.read_text().splitlines() if line.strip()]
    if not why and not rows:
        why = "reported no figures"
    print(f"== {name}: {why or 'ok'} in {time.monotonic() - started:.0f} s\n", flush=True)
    if why:
        rows.append({"benchmark": Path(name).stem, "measure": f"{why} (see its output)", "failed": True})
    return rows


SOURCES = [  # where each benchmark's goals are set, for the reader of results.md
    ("harness, bench_durable", "issue 16 goal 1 (routes at 0.8 of bare Falcon; 100,000 events/s for batches is "
                               "harness.py's own target), issue 15 (what the durable commit costs, no goal)"),
    ("bench_grafana", "issue 16 goal 2 (its data set, 1,000 dashboards x 400 users, ~27 MB, lies between the "
                      "script's realistic and worst cases; both are held to 0.7 of prometheus_client and 1.0 s)"),
    ("bench_oneshot, bench_influxdb", "issue 16 goals 3 and 4"),
    ("bench_redis", "issue 10 (0.9 of the SQLite backend, 100,000 sessions under 0.5 s)"),
    ("bench_kpi", "issue 11 (0.5 of the read+parse floor and 50,000 lines/s, KPI API p99 under 20 ms)"),
    ("bench_telemetry", "issue 13 (20,000 messages/s into SQLite; 1,000 connections: none lost, p99 under 1 s)"),
    ("bench_telemetry_queries", "issue 14 (a node's newest 100 messages: p99 under 50 ms)"),
    ("bench_client", "its docstring (5 us a call for the caller)"),
]


def summary(rows: List[Dict[str, Any]]) -> str:
    goals = [row for row in rows if row.get("met") is not None]
    failed = [row["benchmark"] for row in rows if row.get("failed")]
    return (f"Goals met: {sum(1 for row in goals if row['met'])} of {len(goals)}; "
            f"failed scripts: {', '.join(failed) or 'none'}.")


def write(rows: List[Dict[str, Any]], about: Dict[str, Any], scripts: List[str]) -> None:
    """results.json (every record, the machine) and results.md (the same as a table)."""
    (HERE / "results.json").write_text(json.dumps({"machine": about, "scripts": scripts, "records": rows},
                                                  indent=1) + "\n")
    quick = ("a `--quick` run: shorter load runs, and smaller sizes where the measure names them: " +
             "; ".join(f"{k} {' '.join(v)}" for k, v in QUICK.items())) if about["quick"] else "a full run"
    lines = ["# statskit benchmark results", "",
             f"Written by `python benchmarks/run.py{' --quick' if about['quick'] else ''}` ({quick}). "
             f"Scripts: {', '.join(scripts)}. Every baseline was measured in the same run as its figure, on a "
             "shared machine where other work ran at the same time: absolute figures are noisy, the ratios are "
             "what the goals judge. \"met\" is empty where no goal is set; \"failed\" is a script that crashed "
             "or ran out of time (its output says why).", "",
             "## Machine", ""] + [f"- {key}: {value}" for key, value in about.items()] + [
             "", "## Figures", "", summary(rows), "", table(rows, markdown=True), "",
             "## Where the goals come from", ""] + [
             f"- {names}: {text}" for names, text in SOURCES] + [""]
    (HERE / "results.md").write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter load runs, smaller sizes")
    parser.add_argument("--only", nargs="*", help="script names to run (default: all)")
    parser.add_argument("--no-write", action="store_true", help="print the table only (no results files)")
    parser.add_argument("--rewrite", action="store_true", help="rewrite results.md from results.json, run nothing")
    args = parser.parse_args()
    if args.rewrite:
        saved = json.loads((HERE / "results.json").read_text())
        write(saved["records"], saved["machine"], saved.get("scripts", SCRIPTS))
        return 0
    about = machine(args.quick)
    scripts = args.only or SCRIPTS
    missing = [name for name in scripts if not (HERE / name).exists()]
    if missing:
        parser.error(f"no such script in {HERE}: {', '.join(missing)}")
    rows: List[Dict[str, Any]] = []
    for name in scripts:
        rows += run_script(name, args.quick)
    print(table(rows, markdown=False))
    print(summary(rows))
    if not args.no_write:
        if args.only and (HERE / "results.json").exists():
            # A partial run replaces its scripts' rows and keeps the others (the machine note
            # says which run each part comes from).
            saved = json.loads((HERE / "results.json").read_text())
            benchmarks = {name[:-3] for name in scripts}
            rows = [r for r in saved["records"] if r.get("benchmark") not in benchmarks] + rows
            about["note"] = (f"{', '.join(scripts)}: this run ({about['date']}, {about['commit']}, "
                             f"quick={args.quick}); the rest: {saved['machine'].get('note') or saved['machine'].get('date')}")
            scripts = [name for name in SCRIPTS if name in set(saved.get("scripts", [])) | set(scripts)]
        write(rows, about, scripts)
        print(f"\nwritten to {HERE / 'results.md'} and {HERE / 'results.json'}")
    return 1 if any(row.get("failed") for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
