"""The one-shot queue tuned for the Redis backend: the generic queue (:mod:`.store_records`),
with a post that is one Lua script instead of an optimistic transaction plus an append.

The script stamps the event after its series' newest one and appends it to the log in one
atomic step, so the events of a series are numbered in time order across hosts (the generic
queue's one limit, gone) and a ``POST /event`` costs one round trip.
"""
from __future__ import annotations

from typing import Any

from .queue import QueueLimits, Reporter
from .store_records import LOG, SERIES, RecordsQueue, _encode_event

_POST = """
local t = tonumber(ARGV[1])
local prev = redis.call('GET', KEYS[1])
if prev then
  local p = struct.unpack('<i8', prev)
  if t <= p then t = p + 1 end
end
local stamp = struct.pack('<i8', t)
redis.call('SET', KEYS[1], stamp)
redis.call('SADD', KEYS[2], ARGV[3])
local seq = redis.call('INCRBY', KEYS[4], 1)
redis.call('ZADD', KEYS[3], seq, string.format('%016x', seq) .. stamp .. string.sub(ARGV[2], 9))
return {seq, t}
"""


class RedisQueue(RecordsQueue):
    def __init__(self, backend: Any, limits: QueueLimits, reporter: Reporter) -> None:
        super().__init__(backend.records, backend.logs, limits, reporter)
        self.backend = backend
        self._script = backend.client.register_script(_POST)

    def _post(self, key: str, value: float, time_ms: int) -> None:
        records, logs = self.backend.records, self.backend.logs
        keys = [records.key(SERIES, key), records.index(SERIES), *logs.keys(LOG)]
        with self.backend.guard():
            seq, stamped = self._script(keys=keys, args=[time_ms, _encode_event(time_ms, key, value), key])
        if int(seq) % self.limits.maintain_every == 0:
            try:
                self.maintain(int(stamped))
            except Exception as exc:
                if not self.backend.is_transient(exc):
                    raise  # stored already; a store that is down is cleaned up at the next scrape
