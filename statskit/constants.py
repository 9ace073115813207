"""Values every part of statskit agrees on.

    >>> INT64_MIN <= 0 <= INT64_MAX, SECRET_FILE
    (True, 'secret.key')
"""
from __future__ import annotations

# Go's int and InfluxDB's integer fields: what the originals' numbers fit in.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# The token secret statskit-server generates in its data dir when none is configured, and
# where statskit-token looks for it.
SECRET_FILE = "secret.key"
