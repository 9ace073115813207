"""``Analytics``: the stats-client API over a bounded background queue.

Deferred events (``defer=True``, the default) go through :class:`statskit.worker.BatchWorker`:
one daemon thread, a bounded queue that drops the *newest* event when full, batches to
``POST /log/events``, retries with backoff. See the package docstring for the whole story.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
import warnings
from typing import Any, Callable, Dict, List, Mapping, Optional, Set, Union
from urllib.parse import quote

import requests

from statskit.events import new_id
from statskit.worker import BatchWorker, RetryableError, Worker

from . import lifecycle
from .errors import ClientWarning, DroppedError, SendError
from .options import _NEEDS, DEFAULTS, _validate
from .transport import (
    BatchRouteMissing,
    RetryableSendError,
    Transport,
    check,
    encode_json,
)

log = logging.getLogger("statskit_client")

Event = Dict[str, Any]
OnError = Callable[[BaseException, List[Event]], None]

WARN_INTERVAL = 10.0  # seconds between two "events dropped" warnings of one client

_time_ns = time.time_ns
_current: Optional["Analytics"] = None


class Analytics:
    """A stats-client compatible client. ``Analytics(config)`` or ``Analytics.init(config)``
    then ``Analytics.stats()`` anywhere; see :data:`DEFAULTS` for the keys."""

    def __init__(self, config: Optional[Mapping[str, Any]] = None) -> None:
        given = dict(config or {})
        unknown = sorted(set(given) - set(DEFAULTS))
        if unknown:
            log.warning("statskit_client: ignoring unknown config keys %s", unknown)
        # None means "the default": the original's init() forwarded url=None and lost the default.
        cfg = {k: (v if given.get(k) is None else given[k]) for k, v in DEFAULTS.items()}
        self.config = cfg
        self.url: str = cfg["url"]
        self.disabled = bool(cfg["disabled"])
        self.defer = bool(cfg["defer"])
        self.sync_mode = bool(cfg["sync_mode"])
        if not self.disabled and not cfg["access_token"]:
            raise ValueError("access_token is not set: pass config['access_token'] (statskit-token mints one), "
                             "or config['disabled']=True")
        tags = cfg["tags"] or {}
        if not isinstance(tags, Mapping):
            raise TypeError("config['tags'] must be a dict")
        # As strings, as the original's system_startup() sent them.
        self.tags: Dict[str, str] = {str(k): str(v) for k, v in tags.items()}
        self.on_error: Optional[OnError] = cfg["on_error"]
        self.on_dropped: Optional[Callable[[List[Event], str], None]] = cfg["on_dropped"]
        self.before_send: Optional[Callable[[Event], Optional[Event]]] = cfg["before_send"]
        self.exit_timeout = float(cfg["exit_timeout"])
        self.max_batch_bytes = int(cfg["max_batch_bytes"])
        self.transport = Transport(self.url, cfg["access_token"], float(cfg["timeout"]), bool(cfg["gzip"]))

        self.sent = 0       # events the server took
        self.dropped = 0    # events given up, for any reason; by reason in self.drops
        self.drops: Dict[str, int] = {}
        self._lock = threading.Lock()  # counters only: never taken on the log() hot path
        self._next_warn = 0.0
        self._unreported = 0
        self._warned_disabled = False
        self._hook_failed: Set[str] = set()
        self._last_error: Optional[BaseException] = None

        self._worker: Optional[Worker] = None
        # The hot path tests this one attribute: the queue's submit when events are deferred.
        self._submit: Optional[Callable[[Event], bool]] = None
        if self.defer and not self.disabled and not self.sync_mode:
            self._worker = BatchWorker(
                self._send_batch, max_queue=int(cfg["max_queue"]), batch_size=int(cfg["batch_size"]),
                max_latency=float(cfg["flush_interval"]), max_retries=cfg["max_retries"],
                max_backoff=float(cfg["max_backoff"]), on_drop=self._on_worker_drop, name="statskit-client")
            self._submit = self._worker.submit
        lifecycle.track(self)  # for the atexit drain and the after-fork reset

    # --- the stats-client singleton -------------------------------------------------------
    @classmethod
    def init(cls, config: Optional[Mapping[str, Any]] = None) -> "Analytics":
        """Create the client that :meth:`stats` and the module functions use. All keys are kept
        (the original forwarded only four and lost ``tags``). A previous client is not stopped:
        it still delivers what it holds, and is drained at exit."""
        global _current
        _current = cls(config)
        return _current

    @classmethod
    def stats(cls) -> "Analytics":
        """The client made by :meth:`init`; RuntimeError before (the original raised NameError)."""
        if _current is None:
            raise RuntimeError("statskit_client is not initialised: call Analytics.init({'url': ..., "
                               "'access_token': ...}) or statskit_client.init(...) first")
        return _current

    # --- logging ---------------------------------------------------------------------------
    def log(self, data: Union[Event, List[Event]]) -> Optional[str]:
        """Log an event dict (``uid`` and ``event`` required) or a list of points.

        ``defer=True``: queue and return None at once. ``defer=False``: POST now and return the
        server's answer (the event id, or ``"OK"`` for a list), ``''`` if it failed.
        """
        submit = self._submit
        if submit is not None and isinstance(data, dict):
            # Hot path: no I/O, no JSON, no lock but the queue's, no id (the worker adds it).
            if data.get("uid") is None or data.get("event") is None:
                raise ValueError(_NEEDS)
            event = self._prepare(data, True)
            if event is not None:
                submit(event)
            return None
        return self._log_slow(data)

    def _prepare(self, data: Event, stamp: bool) -> Optional[Event]:
        """A copy of ``data`` (the caller may reuse its dict) with the time, the config tags and
        ``before_send`` applied; None when ``before_send`` dropped it."""
        event = dict(data)
        if stamp and event.get("time") is None:
            # The real event time, not the delivery time, which retries and batching delay.
            event["time"] = _time_ns()
        if self.tags:
            own = data.get("tags")
            if not own:
                event["tags"] = dict(self.tags)
            elif isinstance(own, Mapping):
                event["tags"] = {**self.tags, **own}  # the event's own tags win
        if self.before_send is not None:
            try:
                edited = self.before_send(event)
                if edited is not None and not isinstance(edited, dict):
                    raise TypeError(f"before_send must return a dict or None, not {type(edited).__name__}")
            except Exception as exc:  # dropped rather than sent unfiltered: the hook may scrub PII
                self._report_drop([event], "before_send", exc)
                return None
            return edited
        return event

    def _log_slow(self, data: Union[Event, List[Event]]) -> Optional[str]:
        if self.disabled:
            if not self._warned_disabled:  # once, not every call as the original did
                self._warned_disabled = True
                log.warning("statskit_client is disabled: events are not sent")
                warnings.warn("statskit_client is disabled: events are not sent", ClientWarning, stacklevel=3)
            return None
        is_list, items = _validate(data)
        deferred = self.defer  # with a worker, or in sync_mode
        events = [e for e in (self._prepare(item, deferred) for item in items) if e is not None]
        if deferred:
            if self._submit is not None:
                for event in events:
                    self._submit(event)
            elif events:
                self._send_inline(events)
            return None
        if not events:
            return None  # all dropped by before_send
        return self._post_now(events if is_list else events[0], events)

    def _post_now(self, payload: Union[Event, List[Event]], events: List[Event]) -> str:
        """defer=False: POST /log/event/ as the original did; errors logged, answered ``''``."""
        try:
            body = encode_json(payload).encode()
        except (ValueError, TypeError, RecursionError) as exc:
            self._report_drop(events, "unencodable", exc)
            return ""
        try:
            resp = self.transport.post("log/event/", body)
        except requests.RequestException as exc:
            log.warning("statskit_client: could not reach %s: %s", self.url, exc)
            self._report_drop(events, "retries_exhausted", RetryableSendError(str(exc)), quiet=True)
            return ""
        try:
            check(resp)
        except SendError as exc:
            log.error("statskit_client: %s", exc)
            reason = "retries_exhausted" if isinstance(exc, RetryableError) else "rejected"
            self._report_drop(events, reason, exc, quiet=True)
            return ""
        with self._lock:
            self.sent += len(events)
        try:
            answer: str = resp.json()  # the event's id (or "OK" for a list), a JSON string
        except ValueError:
            return resp.text
        return answer

    # --- sending (the worker's thread, or the caller's in sync_mode) ------------------------
    def _send_batch(self, batch: List[Event]) -> None:
        """The worker's ``send``. What is delivered or rejected is removed from ``batch`` in place:
        the worker retries with the same list, so a retry resends only the rest."""
        try:
            self._deliver(batch)
        except BaseException as exc:
            self._last_error = exc  # for on_error when the worker gives the batch up
            raise

    def _deliver(self, batch: List[Event]) -> None:
        bodies: List[bytes] = []
        i = 0
        while i < len(batch):
            event = batch[i]
            if "event_id" not in event:
                # Once per event: a retry reuses it and the server's INSERT OR IGNORE stores it once.
                event["event_id"] = new_id()
            try:
                bodies.append(encode_json(event).encode())
                i += 1
            except (ValueError, TypeError, RecursionError) as exc:
                del batch[i]
                self._report_drop([event], "unencodable", exc)
        if not self.transport.has_batch_route:
            self._deliver_one_by_one(batch, bodies)
            return
        limit = len(batch)  # halved to find an invalid event when the server does not name it
        while batch:
            n, size = 1, len(bodies[0]) + 2
            while n < min(limit, len(batch)) and size + len(bodies[n]) + 1 <= self.max_batch_bytes:
                size += len(bodies[n]) + 1
                n += 1
            try:
                self.transport.post_batch(bodies[:n])
            except BatchRouteMissing:
                self._deliver_one_by_one(batch, bodies)
                return
            except SendError as exc:
                # The server takes a batch whole or not at all: one bad event must not sink the rest.
                if isinstance(exc, RetryableError) or exc.status not in (400, 413, 422):
                    raise
                bad = 0 if n == 1 else exc.index if exc.index is not None and 0 <= exc.index < n else None
                if bad is None:
                    limit = max(1, n // 2)
                    continue
                rejected = batch.pop(bad)
                del bodies[bad]
                self._report_drop([rejected], "rejected", exc)
                limit = len(batch)
                continue
            del batch[:n], bodies[:n]
            with self._lock:
                self.sent += n

    def _deliver_one_by_one(self, batch: List[Event], bodies: List[bytes]) -> None:
        """To a server without ``/log/events`` (the original stats-service): one ``POST
        /log/event/`` per event, a point as a one-point list (its v2 API). Delivered and
        rejected events leave ``batch`` as they go, so a retry resends only the rest."""
        while batch:
            event, body = batch[0], bodies[0]
            if "measurement" in event and "uid" not in event and "event" not in event:
                body = b"[" + body + b"]"
            try:
                self.transport.post_event(body)
            except SendError as exc:
                if isinstance(exc, RetryableError):
                    raise
                del batch[0], bodies[0]
                self._report_drop([event], "rejected", exc)
                continue
            del batch[0], bodies[0]
            with self._lock:
                self.sent += 1

    def _send_inline(self, events: List[Event]) -> None:
        batch = list(events)
        try:
            self._send_batch(batch)
        except Exception as exc:
            self._report_drop(batch, "retries_exhausted" if isinstance(exc, RetryableError) else "rejected", exc)

    # --- drops -----------------------------------------------------------------------------
    def _on_worker_drop(self, items: List[Event], reason: str) -> None:
        exc = self._last_error if reason in ("rejected", "retries_exhausted") else None
        self._report_drop(items, reason, exc or DroppedError(reason))

    def _report_drop(self, items: List[Event], reason: str, exc: BaseException, quiet: bool = False) -> None:
        """Count, warn (at most every WARN_INTERVAL s), and tell the hooks. Never silent."""
        n = len(items)
        now = time.monotonic()
        with self._lock:
            self.dropped += n
            self.drops[reason] = self.drops.get(reason, 0) + n
            if not quiet:
                self._unreported += n
            due = not quiet and now >= self._next_warn
            if due:
                self._next_warn = now + WARN_INTERVAL
                count, self._unreported = self._unreported, 0
        if due:
            log.warning("statskit_client dropped %d event(s), the last for %s: %s (dropped in all: %s)",
                        count, reason, exc, dict(self.drops))
            warnings.warn(f"statskit_client is dropping events ({reason}); see Analytics.dropped and on_error",
                          ClientWarning, stacklevel=2)
        if self.on_dropped is not None:
            self._call_hook("on_dropped", self.on_dropped, items, reason)
        if self.on_error is not None:
            self._call_hook("on_error", self.on_error, exc, items)

    def _call_hook(self, name: str, hook: Callable[..., Any], *args: Any) -> None:
        try:
            hook(*args)
        except Exception:
            if name not in self._hook_failed:  # once per hook: a broken hook must not flood the log
                self._hook_failed.add(name)
                log.exception("statskit_client: the %s hook raised (reported once)", name)

    def _report_unreported(self) -> None:
        with self._lock:
            count, self._unreported = self._unreported, 0
        if count:
            log.warning("statskit_client dropped %d more event(s) (dropped in all: %s)", count, dict(self.drops))

    # --- flush, shutdown, fork -------------------------------------------------------------
    @property
    def queued(self) -> int:
        """Events waiting or being sent."""
        return len(self._worker) if self._worker is not None else 0

    def flush(self, timeout: Optional[float] = 10.0) -> bool:
        """Wait until every queued event is delivered or given up; False if ``timeout`` ran out."""
        return self._worker.flush(timeout) if self._worker is not None else True

    def shutdown(self, timeout: Optional[float] = 10.0) -> bool:
        """Flush for at most ``timeout`` s, then stop the thread; events still queued are dropped
        (reported as ``"shutdown"``), as are events logged afterwards."""
        lifecycle.untrack(self)
        if self._worker is None:
            return True
        left = len(self._worker)
        drained = self._worker.close(timeout)
        if not drained:
            log.warning("statskit_client: %d event(s) not delivered within %s s were given up at shutdown",
                        left, timeout)
        self._report_unreported()
        return drained

    close = shutdown

    def _after_fork_in_child(self) -> None:
        # The worker resets itself (statskit.worker); the rest of the per-process state is here.
        # Counters too: they describe what this process's client did, not what its parent did.
        self._lock = threading.Lock()
        self.transport.reset()
        self.sent = self.dropped = self._unreported = 0
        self.drops = {}

    # --- the other stats-client calls ------------------------------------------------------
    def ping(self) -> Any:
        """``GET <url>/ping/``: the server's status dict; raises on an error (as the original)."""
        resp = self.transport.get("ping/")
        resp.raise_for_status()
        return resp.json()

    def get(self, event_id: str) -> Optional[Event]:
        """``GET <url>/log/event/<id>/``: the stored event, None if the server has no such id
        (a deferred event may not be delivered yet: flush() first). Other errors raise."""
        resp = self.transport.get(f"log/event/{quote(str(event_id).strip(), safe='')}/")
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        event: Event = resp.json()
        return event

    def system_startup(self) -> Optional[str]:
        """Log the original's startup point: measurement ``server_startup``, tags ``uid``
        (``system-<hostname>``), ``ip``, ``hostname`` and the config tags, fields ``{value: 1}``."""
        hostname = socket.gethostname()
        try:
            ip = socket.gethostbyname(hostname)
        except OSError:  # the original crashed on a host that cannot resolve its own name
            ip = ""
        tags = {"uid": f"system-{hostname}", "ip": ip, "hostname": hostname, **self.tags}
        return self.log([{"measurement": "server_startup", "tags": tags, "fields": {"value": 1}}])


def current() -> Optional[Analytics]:
    """The client made by ``init``, or None."""
    return _current
