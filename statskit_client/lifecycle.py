"""Process life of the clients: drain their queues at exit, reset them in a forked child.

Every :class:`~statskit_client.client.Analytics` registers itself with :func:`track`.
"""
from __future__ import annotations

import atexit
import os
import sys
import time
import weakref
from typing import Any

_instances: "weakref.WeakSet[Any]" = weakref.WeakSet()


def track(client: Any) -> None:
    """Drain ``client`` at exit (within its ``exit_timeout``) and reset it after a fork."""
    _instances.add(client)


def untrack(client: Any) -> None:
    _instances.discard(client)


def _drain_at_exit() -> None:
    """atexit: deliver what is queued so a short script loses nothing, within each client's
    ``exit_timeout``; the clients share one deadline, so the longest bound is the total bound."""
    clients = list(_instances)
    deadline = time.monotonic() + max((c.exit_timeout for c in clients), default=0.0)
    for client in clients:
        if client.queued:
            client.shutdown(max(0.0, min(client.exit_timeout, deadline - time.monotonic())))
        else:
            client._report_unreported()


def _after_fork_in_child() -> None:
    for client in list(_instances):
        client._after_fork_in_child()
    # multiprocessing's forked children leave with os._exit(): atexit never runs there, its own
    # finalizers do. Registered in its after-fork list because it clears its finalizers first.
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None and _instances:
        mp_util.register_after_fork(_MP_MARKER, _register_mp_finalizer)


class _Marker:
    """multiprocessing keeps after-fork callbacks in a weak dict: it needs a live object."""


_MP_MARKER = _Marker()


def _register_mp_finalizer(_: object) -> None:
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        mp_util.Finalize(None, _drain_at_exit, exitpriority=100)


atexit.register(_drain_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
