"""The fast exposition path writes byte for byte what prometheus_client writes for the same
samples, in both formats (what Prometheus, VictoriaMetrics and promtool parse)."""
from __future__ import annotations

import random

import pytest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from statskit.exposition import TextFamily, encode, format_value, sample_prefix

TRICKY = ["", "plain", 'a "quoted" one', "back\\slash", "new\nline", "ünïcödé ✓", "tab\there", "}{,=", "\\n"]


class Registry:
    def __init__(self, families):
        self.families = families

    def collect(self):
        return self.families


def families(seed: int):
    """Random counter and gauge families, as Metric and as TextFamily."""
    rnd = random.Random(seed)
    metrics, texts = [], []
    for i, kind in enumerate(["counter", "gauge", "counter"]):
        name = f"statskit_demo_{i}"
        doc = rnd.choice(["Things.", 'With "quotes" and \\ backslash', "two\nlines"])
        names = sorted(rnd.sample(["a", "b", "c", "zeta", "user_login"], rnd.randint(0, 3)))
        metric = Metric(name, doc, kind)
        lines = []
        sample = name + "_total" if kind == "counter" else name
        for _ in range(rnd.randint(1, 20)):
            values = [rnd.choice(TRICKY) for _ in names]
            value = rnd.choice([0.0, 1.0, 2.5, 1e21, float("inf"), 12345678.0, rnd.random()])
            metric.add_sample(sample, dict(zip(names, values)), value)
            lines.append(f"{sample_prefix(sample, names, values)} {format_value(value)}\n")
        metrics.append(metric)
        texts.append(TextFamily(name, doc, kind, lines))
    return metrics, texts


@pytest.mark.parametrize("seed", range(20))
def test_text_families_render_as_the_library_renders_the_same_samples(seed):
    metrics, texts = families(seed)
    assert encode(texts, openmetrics=False) == generate_latest(Registry(metrics))
    assert encode(texts, openmetrics=True) == generate_openmetrics(Registry(metrics))


def test_other_families_go_through_the_library_unchanged_and_mix_with_text_families():
    histogram = HistogramMetricFamily("statskit_demo_seconds", "Latency.", labels=["route"])
    histogram.add_metric(["/x"], [("0.1", 1), ("+Inf", 3)], 0.7)
    counter = CounterMetricFamily("statskit_demo_plain", "Plain.", labels=["k"])
    counter.add_metric(["v"], 4)
    gauge = GaugeMetricFamily("statskit_demo_gauge", "Gauge.")
    gauge.add_metric([], 1)
    untyped = Metric("statskit_demo_untyped", "Untyped.", "unknown")
    untyped.add_sample("statskit_demo_untyped", {}, 7, timestamp=1700000000.5)
    metrics, texts = families(99)
    mixed = [histogram, texts[0], counter, texts[1], gauge, untyped]
    same = [histogram, metrics[0], counter, metrics[1], gauge, untyped]
    assert encode(mixed, openmetrics=False) == generate_latest(Registry(same))
    assert encode(mixed, openmetrics=True) == generate_openmetrics(Registry(same))


def test_a_text_family_is_a_counter_or_a_gauge():
    with pytest.raises(ValueError):
        TextFamily("x", "X.", "histogram", [])
