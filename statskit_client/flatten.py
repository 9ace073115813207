"""``flatten(d, sep='_')``: stats-client v1's ``dflatten.flatten`` helper.

    >>> flatten({"user": {"plan": "pro", "seats": {"used": 3}}, "n": 1})
    {'user_plan': 'pro', 'user_seats_used': 3, 'n': 1}

statskit_client does not need it to log (the server flattens nested dicts with ``_`` itself);
it is kept for code that called it directly.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping


def flatten(d: Mapping[str, Any], sep: str = "_", parent_key: str = "") -> Dict[str, Any]:
    """Nested mappings become one level, their keys joined with ``sep``; other values are kept."""
    out: Dict[str, Any] = {}
    for key, value in d.items():
        name = f"{parent_key}{sep}{key}" if parent_key else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, sep, name))
        else:
            out[name] = value
    return out
