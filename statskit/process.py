"""This process's id without a system call: ``os.getpid()`` is one, and the request path asked
for it about five times a request (to notice a fork). Reset in a forked child before any later
registered fork hook runs, since this module registers first (its users import it).

    >>> import os
    >>> pid() == os.getpid()
    True
"""
from __future__ import annotations

import os

_pid = os.getpid()


def pid() -> int:
    """The id of the running process (right after a fork too)."""
    return _pid


def _after_fork_in_child() -> None:
    global _pid
    _pid = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
