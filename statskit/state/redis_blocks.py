"""The Redis backend's :mod:`~statskit.state.protocols`.

A record is a string key ``{tag}:rec:<table>:<key>`` listed in the set ``{tag}:recidx:<table>``;
``update`` is optimistic (WATCH the records, read them, MULTI/EXEC the writes; a concurrent
writer makes EXEC fail and the change runs again), so no update is ever lost. A log is a sorted
set ``{tag}:log:<name>`` scored by number, with its counter ``{tag}:logseq:<name>``; ``append`` is
one Lua script, so numbers follow commit order.
"""
from __future__ import annotations

from typing import Any, Callable, ContextManager, Iterator, List, Optional, Sequence, Tuple

from ..errors import RetryableError
from .protocols import Change, T

Guard = Callable[[], ContextManager[None]]
MAX_ATTEMPTS = 200  # optimistic retries of one update before it is reported busy
_CHUNK = 500
_SEQ_DIGITS = 16  # a log member is its number in hex, then the item: members are unique

_APPEND = """
local n = #ARGV
local last = redis.call('INCRBY', KEYS[2], n)
for i = 1, n do
  local seq = last - n + i
  redis.call('ZADD', KEYS[1], seq, string.format('%016x', seq) .. ARGV[i])
end
return last
"""


class RedisRecords:
    def __init__(self, client: Any, tag: str, guard: Guard) -> None:
        self.client = client
        self.tag = tag
        self.guard = guard

    def key(self, table: str, key: str) -> str:
        """The Redis key of one record (for a store's own scripts)."""
        return f"{self.tag}:rec:{table}:{key}"

    def index(self, table: str) -> str:
        """The set listing a table's keys."""
        return f"{self.tag}:recidx:{table}"

    def update(self, table: str, keys: Sequence[str], change: Change[T]) -> T:
        from redis.exceptions import WatchError

        unique = list(dict.fromkeys(keys))
        rkeys = [self.key(table, k) for k in unique]
        with self.guard():
            for _ in range(MAX_ATTEMPTS):
                with self.client.pipeline(transaction=True) as pipe:
                    try:
                        if rkeys:
                            pipe.watch(*rkeys)
                        values = pipe.mget(rkeys) if rkeys else []
                        writes, result = change(dict(zip(unique, values)))
                        pipe.multi()
                        for key, value in writes.items():
                            if value is None:
                                pipe.delete(self.key(table, key))
                                pipe.srem(self.index(table), key)
                            else:
                                pipe.set(self.key(table, key), value)
                                pipe.sadd(self.index(table), key)
                        pipe.execute()
                        return result
                    except WatchError:
                        continue  # another process changed one of them: read again
        raise RetryableError(f"records {table}: still contended after {MAX_ATTEMPTS} attempts")

    def get(self, table: str, key: str) -> Optional[bytes]:
        with self.guard():
            value = self.client.get(self.key(table, key))
        return None if value is None else bytes(value)

    def scan(self, table: str) -> Iterator[Tuple[str, bytes]]:
        with self.guard():
            members = [m.decode() for m in self.client.sscan_iter(self.index(table), count=_CHUNK)]
            found: List[Tuple[str, bytes]] = []
            for i in range(0, len(members), _CHUNK):
                chunk = members[i:i + _CHUNK]
                values = self.client.mget([self.key(table, k) for k in chunk])
                found += [(k, bytes(v)) for k, v in zip(chunk, values) if v is not None]
        return iter(found)

    def delete(self, table: str, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        with self.guard():
            pipe = self.client.pipeline(transaction=True)
            for key in keys:
                pipe.delete(self.key(table, key))
                pipe.srem(self.index(table), key)
            replies = pipe.execute()
        return sum(int(r) for r in replies[0::2])

    def count(self, table: str) -> int:
        with self.guard():
            return int(self.client.scard(self.index(table)))


class RedisLogs:
    def __init__(self, client: Any, tag: str, guard: Guard) -> None:
        self.client = client
        self.tag = tag
        self.guard = guard
        self._append = client.register_script(_APPEND)

    def keys(self, log: str) -> List[str]:
        """The sorted set of a log and its counter (for a store's own scripts)."""
        return [f"{self.tag}:log:{log}", f"{self.tag}:logseq:{log}"]

    def append(self, log: str, items: Sequence[bytes]) -> int:
        if not items:
            return self.last(log)
        with self.guard():
            return int(self._append(keys=self.keys(log), args=list(items)))

    def read(self, log: str, after: int, limit: int) -> List[Tuple[int, bytes]]:
        with self.guard():
            members = self.client.zrangebyscore(self.keys(log)[0], f"({after}", "+inf", start=0, num=limit)
        return [(int(m[:_SEQ_DIGITS], 16), bytes(m[_SEQ_DIGITS:])) for m in members]

    def trim(self, log: str, upto: int) -> int:
        with self.guard():
            return int(self.client.zremrangebyscore(self.keys(log)[0], "-inf", upto))

    def last(self, log: str) -> int:
        with self.guard():
            value = self.client.get(self.keys(log)[1])
        return int(value) if value is not None else 0

