"""The one-shot queue tuned for the Redis backend: the generic queue (:mod:`.store_records`),
with a post that is one Lua script instead of an optimistic transaction plus an append.

The script stamps each event after its series' newest one and appends it to the log in one
atomic step, so the events of a series are numbered in time order across hosts (the generic
queue's one limit, gone). It also sets this process's mark to the batch's number, so a batch
whose answer was lost is neither lost nor stored twice (see ``RedisQueue._send``). The posts that a process's threads make at the same time share one
script call (:class:`~statskit.grouping.GroupCall`, as the SQLite queue shares a commit): a
round trip is a blocking call that hands the GIL to another thread and back, and it costs
more than the events in it.
"""
from __future__ import annotations

import threading
from typing import Any, List, Optional, Tuple

from ..grouping import GroupCall
from ..process import pid
from ..state.redis import MARK_TTL, ReplyLost
from .queue import QueueLimits, Reporter
from .store_common import log
from .store_records import LOG, SERIES, RecordsQueue, _encode_event

Post = Tuple[str, float, int]  # series key, value, time (ms)
_SETTLE: Any = ("", 0.0, 0)  # spooled to have the spool thread settle a batch in doubt

# KEYS: the series index, the log, its counter, this process's mark, then each event's series
# record; ARGV: the batch's number, the mark's lifetime (s), then three per event (time, encoded
# event, series key). Returns the last number and the newest stamp.
_POST = """
local n = (#ARGV - 2) / 3
local last = redis.call('INCRBY', KEYS[3], n)
local newest = 0
for i = 1, n do
  local t = tonumber(ARGV[3 * i])
  local prev = redis.call('GET', KEYS[4 + i])
  if prev then
    local p = struct.unpack('<i8', prev)
    if t <= p then t = p + 1 end
  end
  local stamp = struct.pack('<i8', t)
  redis.call('SET', KEYS[4 + i], stamp)
  redis.call('SADD', KEYS[1], ARGV[3 * i + 2])
  local seq = last - n + i
  redis.call('ZADD', KEYS[2], seq, string.format('%016x', seq) .. stamp .. string.sub(ARGV[3 * i + 1], 9))
  if t > newest then newest = t end
end
redis.call('SET', KEYS[4], ARGV[1], 'EX', ARGV[2])
return {last, newest}
"""


class RedisQueue(RecordsQueue):
    def __init__(self, backend: Any, limits: QueueLimits, reporter: Reporter) -> None:
        super().__init__(backend.records, backend.logs, limits, reporter)
        self.backend = backend
        self._script = backend.client.register_script(_POST)
        self._group: GroupCall[Post] = GroupCall(self._post_many)
        self._send_lock = threading.Lock()  # one batch at a time, and none while one is in doubt
        self._mark, self._mark_pid, self._batch = "", 0, 0
        self._doubt: Optional[Tuple[int, List[Post]]] = None  # a batch whose answer was lost

    def _post(self, key: str, value: float, time_ms: int) -> None:
        self._group.call([(key, value, time_ms)])

    def _post_spooled(self, events: List[Post]) -> None:
        self._post_many([e for e in events if e is not _SETTLE])  # one script: all of them, or none

    def _post_many(self, events: List[Post]) -> None:
        with self._send_lock:
            self._own_mark()  # first: _settle and _send use its mark (a forked worker gets its own)
            self._settle()
            if events:
                self._send(events)

    def _send(self, events: List[Post]) -> None:
        """One script for ``events``. When the answer is lost (the connection broke after the
        script went out), the batch is held as in doubt and its callers are answered, as for a
        spooled post: :meth:`_settle` reads this process's mark to tell whether Redis stored it,
        so nothing is stored twice (or lost)."""
        records, logs = self.backend.records, self.backend.logs
        self._batch += 1
        keys = [records.index(SERIES), *logs.keys(LOG), self._mark]
        args: List[Any] = [self._batch, MARK_TTL]
        for key, value, time_ms in events:
            keys.append(records.key(SERIES, key))
            args += (time_ms, _encode_event(time_ms, key, value), key)
        try:
            with self.backend.guard():
                last, newest = self.backend.run_serially(self._script, keys, args)
        except ReplyLost:
            self._doubt = (self._batch, events)
            self._spool.submit(_SETTLE)  # settled once Redis answers, with or without more posts
            return
        every = self.limits.maintain_every
        if int(last) // every != (int(last) - len(events)) // every:
            try:  # "now" is the newest post's time, as in the SQLite queue
                self.maintain(int(newest))
            except Exception as exc:  # the posts are stored: their callers must not see it fail
                if not self.backend.is_transient(exc):
                    log.exception("one-shot clean-up after a post failed; the next scrape runs it again")

    def _settle(self) -> None:
        """Under the send lock: a batch in doubt is dropped if this process's mark shows Redis
        stored it, else sent again; raises RetryableError while Redis stays away (it waits)."""
        if self._doubt is None:
            return
        batch, events = self._doubt
        with self.backend.guard():
            stored = self.backend.client.get(self._mark)
        self._doubt = None
        if stored is not None and int(stored) == batch:
            return  # it landed: the mark is set in the same script, and no batch ran since
        try:
            self._send(events)  # (if its answer is lost too, it is the batch in doubt now)
        except BaseException:
            self._doubt = (batch, events)  # not sent: Redis cannot have stored it under a newer number
            raise

    def _own_mark(self) -> None:
        if self._mark_pid != pid():  # a forked worker: its own mark, batches and doubt (the parent's is its own)
            self._mark_pid = pid()
            self._mark = self.backend.process_key("oneshot-mark")
            self._batch, self._doubt = 0, None

    def close(self, timeout: Optional[float] = None) -> None:
        super().close(timeout)
        if self._doubt is not None:
            log.error("one-shot queue stopped with a batch of %d post(s) whose storing Redis never confirmed",
                      len(self._doubt[1]))
