"""The one-shot queue tuned for the Redis backend: the generic queue (:mod:`.store_records`),
with a post that is one Lua script instead of an optimistic transaction plus an append.

The script stamps each event after its series' newest one and appends it to the log in one
atomic step, so the events of a series are numbered in time order across hosts (the generic
queue's one limit, gone). The posts that a process's threads make at the same time share one
script call (:class:`~statskit.grouping.GroupCall`, as the SQLite queue shares a commit): a
round trip is a blocking call that hands the GIL to another thread and back, and it costs
more than the events in it.
"""
from __future__ import annotations

from typing import Any, List, Tuple

from ..grouping import GroupCall
from .queue import QueueLimits, Reporter
from .store_common import log
from .store_records import LOG, SERIES, RecordsQueue, _encode_event

Post = Tuple[str, float, int]  # series key, value, time (ms)

# KEYS: the series index, the log, its counter, then each event's series record;
# ARGV: three per event (time, encoded event, series key). Returns the last number, newest stamp.
_POST = """
local n = #ARGV / 3
local last = redis.call('INCRBY', KEYS[3], n)
local newest = 0
for i = 1, n do
  local t = tonumber(ARGV[3 * i - 2])
  local prev = redis.call('GET', KEYS[3 + i])
  if prev then
    local p = struct.unpack('<i8', prev)
    if t <= p then t = p + 1 end
  end
  local stamp = struct.pack('<i8', t)
  redis.call('SET', KEYS[3 + i], stamp)
  redis.call('SADD', KEYS[1], ARGV[3 * i])
  local seq = last - n + i
  redis.call('ZADD', KEYS[2], seq, string.format('%016x', seq) .. stamp .. string.sub(ARGV[3 * i - 1], 9))
  if t > newest then newest = t end
end
return {last, newest}
"""


class RedisQueue(RecordsQueue):
    def __init__(self, backend: Any, limits: QueueLimits, reporter: Reporter) -> None:
        super().__init__(backend.records, backend.logs, limits, reporter)
        self.backend = backend
        self._script = backend.client.register_script(_POST)
        self._group: GroupCall[Post] = GroupCall(self._post_many)

    def _post(self, key: str, value: float, time_ms: int) -> None:
        self._group.call([(key, value, time_ms)])

    def _post_spooled(self, events: List[Post]) -> None:
        self._post_many(events)  # one script: all of the batch is stored, or none (and it is retried)

    def _post_many(self, events: List[Post]) -> None:
        records, logs = self.backend.records, self.backend.logs
        keys = [records.index(SERIES), *logs.keys(LOG)]
        args: List[Any] = []
        for key, value, time_ms in events:
            keys.append(records.key(SERIES, key))
            args += (time_ms, _encode_event(time_ms, key, value), key)
        with self.backend.guard():
            last, newest = self.backend.run_serially(self._script, keys, args)
        every = self.limits.maintain_every
        if int(last) // every != (int(last) - len(events)) // every:
            try:  # "now" is the newest post's time, as in the SQLite queue
                self.maintain(int(newest))
            except Exception as exc:  # the posts are stored: their callers must not see it fail
                if not self.backend.is_transient(exc):
                    log.exception("one-shot clean-up after a post failed; the next scrape runs it again")
