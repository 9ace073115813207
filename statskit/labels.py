"""Label sets: one canonical form in memory and one text form in stores.

    >>> key = label_key({"b": "2", "a": "1"})
    >>> key, encode_labels(key), decode_labels(encode_labels(key)) == key
    ((('a', '1'), ('b', '2')), '[["a","1"],["b","2"]]', True)
"""
from __future__ import annotations

import json
from typing import Dict, Mapping, Tuple, Union

import orjson

LabelKey = Tuple[Tuple[str, str], ...]
Labels = Union[Mapping[str, str], LabelKey]

_decoded: Dict[str, LabelKey] = {}
_CACHE_SIZE = 200_000  # one per counter series; as many as /metrics caches label texts for (grafana.metrics)


def label_key(labels: Labels) -> LabelKey:
    """A hashable, canonical (sorted) form of a label set."""
    if isinstance(labels, tuple):
        return labels
    return tuple(sorted((str(k), str(v)) for k, v in labels.items()))


def encode_labels(key: LabelKey) -> str:
    """The stored text of a label set: a JSON array of ``[name, value]`` pairs."""
    try:
        return orjson.dumps(key).decode()
    except TypeError:  # a lone surrogate, which orjson refuses: the same text, the slow way
        return json.dumps([list(p) for p in key], separators=(",", ":"), ensure_ascii=False)


def decode_labels(text: str) -> LabelKey:
    """The label set :func:`encode_labels` wrote (cached: the same few sets come back)."""
    key = _decoded.get(text)
    if key is None:
        if len(_decoded) >= _CACHE_SIZE:
            _decoded.clear()
        key = _decoded[text] = tuple((k, v) for k, v in orjson.loads(text))
    return key
