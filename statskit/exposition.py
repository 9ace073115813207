"""The exposition text of ``/metrics``: prometheus_client's encoders, with a fast path for the
big families.

A scrape of a Grafana deployment carries one series per dashboard and user: 10,000s of samples,
where prometheus_client spends ~7 us each building ``Sample`` tuples and label dicts, then
sorting and escaping them again at every scrape. A source may instead yield a
:class:`TextFamily`: its sample lines already rendered (from label prefixes it caches), which
this module writes out with the headers each format wants. Every other family goes through
prometheus_client's own encoder, so both paths give byte for byte what the library would.

    >>> family = TextFamily("demo", "Demo things.", "counter",
    ...                     [sample_prefix("demo_total", ("kind",), ("a",)) + " 2.0\\n"])
    >>> print(encode([family], openmetrics=False).decode(), end="")
    # HELP demo_total Demo things.
    # TYPE demo_total counter
    demo_total{kind="a"} 2.0
"""
from __future__ import annotations

from typing import Any, Iterable, List, Sequence, Union

from prometheus_client.core import Metric

from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.utils import floatToGoString

_EOF = b"# EOF\n"

__all__ = ["Family", "TextFamily", "encode", "format_value", "sample_prefix"]


class TextFamily:
    """A counter or gauge family whose sample lines (``name{labels} value\\n``) are rendered."""

    __slots__ = ("name", "documentation", "type", "lines")

    def __init__(self, name: str, documentation: str, type: str, lines: List[str]) -> None:
        if type not in ("counter", "gauge"):
            raise ValueError("TextFamily carries counters and gauges only")
        self.name, self.documentation, self.type, self.lines = name, documentation, type, lines


Family = Union[Metric, "TextFamily"]


def format_value(value: float) -> str:
    """A sample value as both formats write it (Go's float formatting: ``1.0``, ``+Inf``, ``NaN``)."""
    return floatToGoString(value)  # type: ignore[no-untyped-call]


def escape_value(value: str) -> str:
    """A label value as both formats write it."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def sample_prefix(sample_name: str, label_names: Sequence[str], values: Sequence[str]) -> str:
    """``name{a="x",b="y"}``: label names must be valid and given in sorted order (as the
    library sorts them); empty values are kept, as the library keeps them."""
    if not label_names:
        return sample_name
    return sample_name + "{" + ",".join(f'{k}="{escape_value(v)}"' for k, v in zip(label_names, values)) + "}"


def _header(family: TextFamily, openmetrics: bool) -> str:
    if openmetrics:
        doc = family.documentation.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
        return f"# HELP {family.name} {doc}\n# TYPE {family.name} {family.type}\n"
    name = family.name + "_total" if family.type == "counter" else family.name
    doc = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {doc}\n# TYPE {name} {family.type}\n"


class _One:
    def __init__(self, family: Any) -> None:
        self.family = family

    def collect(self) -> List[Any]:
        return [self.family]


def encode(families: Iterable[Any], openmetrics: bool) -> bytes:
    """The exposition of ``families`` (prometheus_client ``Metric`` objects and TextFamily)."""
    parts: List[bytes] = []
    for family in families:
        if isinstance(family, TextFamily):
            parts.append((_header(family, openmetrics) + "".join(family.lines)).encode())
        elif openmetrics:
            parts.append(generate_openmetrics(_One(family))[:-len(_EOF)])  # type: ignore[no-untyped-call]
        else:
            parts.append(generate_latest(_One(family)))
    if openmetrics:
        parts.append(_EOF)
    return b"".join(parts)
