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
import time
from typing import Any, List, Optional, Sequence, Tuple

from ..errors import RetryableError
from ..grouping import GroupCall
from ..journal import Entry, PayloadJournal
from ..process import pid
from ..state.redis import MARK_TTL, ReplyLost
from .queue import QueueLimits, Reporter
from .store_common import log
from .store_records import _EVENT, LOG, SERIES, RecordsQueue, _encode_event

Post = Tuple[str, float, int]  # series key, value, time (ms)
_SETTLE: Any = ("", 0.0, 0)  # spooled to have the spool thread settle a batch in doubt

# KEYS: the series index, the log, its counter, the mark (this process's, or the journal's),
# then each event's series record; ARGV: the mark's new value, its lifetime (s), '1' for journal
# entries (those at or below the mark are skipped: stored already; all of them once the mark is
# fenced, see _FENCE), then four per event (journal number or 0, time, encoded event, series
# key). Returns the last number, the newest stamp and how many events it stored.
_POST = """
local n = (#ARGV - 3) / 4
local done, fenced = nil, false
if ARGV[3] == '1' then
  local mark = redis.call('GET', KEYS[4]) or '0'
  fenced = string.sub(mark, 1, 2) == 'F:'
  if not fenced then done = tonumber(mark) end
end
local fresh = {}
for i = 1, n do
  if not fenced and (not done or tonumber(ARGV[4 * i]) > done) then fresh[#fresh + 1] = i end
end
local m = #fresh
local last = redis.call('INCRBY', KEYS[3], m)
local newest = 0
for j = 1, m do
  local i = fresh[j]
  local t = tonumber(ARGV[4 * i + 1])
  local prev = redis.call('GET', KEYS[4 + i])
  if prev then
    local p = struct.unpack('<i8', prev)
    if t <= p then t = p + 1 end
  end
  local stamp = struct.pack('<i8', t)
  redis.call('SET', KEYS[4 + i], stamp)
  redis.call('SADD', KEYS[1], ARGV[4 * i + 3])
  local seq = last - m + j
  redis.call('ZADD', KEYS[2], seq, string.format('%016x', seq) .. stamp .. string.sub(ARGV[4 * i + 2], 9))
  if t > newest then newest = t end
end
if not fenced then redis.call('SET', KEYS[4], ARGV[1], 'EX', ARGV[2]) end
return {last, newest, m}
"""

# Before adopting a dead journal's entries: its mark (the last entry Redis stored), fenced in the
# same step, so that a script of that process still on its way stores nothing when it arrives
# (its entries are the adopter's now). Asked again (the adoption failed), the same answer.
# KEYS: the mark; ARGV: its lifetime (s).
_FENCE = """
local mark = redis.call('GET', KEYS[1]) or '0'
if string.sub(mark, 1, 2) == 'F:' then return string.sub(mark, 3) end
redis.call('SET', KEYS[1], 'F:' .. mark, 'EX', ARGV[1])
return mark
"""


class RedisQueue(RecordsQueue):
    """The one-shot queue on Redis. ``journal_db``: the host's SQLite database, where posts that
    find Redis away wait (without it they wait in the worker's memory, as in the library's
    default)."""

    def __init__(self, backend: Any, limits: QueueLimits, reporter: Reporter, journal_db: Any = None,
                 commit_wait: float = 0.002) -> None:
        super().__init__(backend.records, backend.logs, limits, reporter)
        self.backend = backend
        self._script = backend.client.register_script(_POST)
        self._fence = backend.client.register_script(_FENCE)
        self._group: GroupCall[Post] = GroupCall(self._post_many)
        self._send_lock = threading.Lock()  # one batch at a time, and none while one is in doubt
        self._mark, self._mark_pid, self._batch = "", 0, 0
        self._doubt: Optional[Tuple[int, List[Post]]] = None  # a batch whose answer was lost
        self._journal: Optional[PayloadJournal] = None
        if journal_db is not None:
            self._journal = PayloadJournal(journal_db, self._post_journaled, decode=_decode_post,
                                           table="oneshot_journal", settled=self._settled, commit_wait=commit_wait)
            self._journal.start()  # what a killed process left is adopted and posted without waiting for posts

    def _waiting(self) -> bool:
        return super()._waiting() or (self._journal is not None and self._journal.waiting() > 0)

    def _wait(self, key: str, value: float, time_ms: int) -> None:
        if self._journal is None:
            return super()._wait(key, value, time_ms)
        self._journal.append(_encode_event(time_ms, key, value), time.time(), (key, value, time_ms))

    def _post(self, key: str, value: float, time_ms: int) -> None:
        self._group.call([(key, value, time_ms)])

    def _post_journaled(self, entries: List[Entry]) -> None:
        """The journal's thread: its entries in one script, which skips what its mark shows stored;
        raises while Redis stays away (the entries stay journaled)."""
        self._post_many([post for post, _, _ in entries], [seq for _, _, seq in entries])

    def _journal_key(self, owner: str) -> str:
        return f"{self.backend.tag}:oneshot-journal:{owner}"

    def _settled(self, owner: str) -> int:
        """The last journal entry of ``owner`` that Redis stored, its mark fenced (asked before
        adopting its rows)."""
        with self.backend.guard():
            return int(self._fence(keys=[self._journal_key(owner)], args=[MARK_TTL]))

    def _post_spooled(self, events: List[Post]) -> None:
        self._post_many([e for e in events if e is not _SETTLE])  # one script: all of them, or none

    def _post_many(self, events: List[Post], journaled: Optional[Sequence[int]] = None) -> None:
        with self._send_lock:
            self._own_mark()  # first: _settle and _send use its mark (a forked worker gets its own)
            self._settle()
            if events:
                self._send(events, journaled)

    def _send(self, events: List[Post], journaled: Optional[Sequence[int]] = None) -> None:
        """One script for ``events`` (``journaled``: their journal numbers). When the answer is
        lost (the connection broke after the script went out), a batch of posts is held as in
        doubt and its callers are answered, as for a spooled post: :meth:`_settle` reads this
        process's mark to tell whether Redis stored it, so nothing is stored twice (or lost).
        Journal entries stay journaled instead, and the journal's mark tells at the next try."""
        records, logs = self.backend.records, self.backend.logs
        numbers: Sequence[int]
        args: List[Any]
        if journaled is None:
            self._batch += 1
            mark, numbers, args = self._mark, [0] * len(events), [self._batch, MARK_TTL, "0"]
        else:
            assert self._journal is not None
            mark, numbers, args = self._journal_key(self._journal.owner), journaled, [journaled[-1], MARK_TTL, "1"]
        keys = [records.index(SERIES), *logs.keys(LOG), mark]
        for (key, value, time_ms), number in zip(events, numbers):
            keys.append(records.key(SERIES, key))
            args += (number, time_ms, _encode_event(time_ms, key, value), key)
        try:
            with self.backend.guard():
                last, newest, stored = self.backend.run_serially(self._script, keys, args)
        except ReplyLost:
            if journaled is not None:
                raise
            self._doubt = (self._batch, events)
            self._spool.submit(_SETTLE)  # settled once Redis answers, with or without more posts
            return
        every = self.limits.maintain_every
        if int(last) // every != (int(last) - int(stored)) // every:
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
        if self._doubt is not None:  # lost again: nothing may pass it (nor move the mark past it)
            raise RetryableError("one-shot batch still in doubt: Redis did not answer")

    def _own_mark(self) -> None:
        if self._mark_pid != pid():  # a forked worker: its own mark, batches and doubt (the parent's is its own)
            self._mark_pid = pid()
            self._mark = self.backend.process_key("oneshot-mark")
            self._batch, self._doubt = 0, None

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Send what waits (spooled, in doubt, journaled) now; False while Redis stays away."""
        deadline = None if timeout is None else time.monotonic() + timeout
        done = super().flush(timeout)
        if self._journal is not None:
            done = self._journal.flush(None if deadline is None else max(0.0, deadline - time.monotonic())) and done
        return done

    def close(self, timeout: Optional[float] = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        super().close(timeout)
        if self._journal is not None and not self._journal.close(
                None if deadline is None else max(0.0, deadline - time.monotonic())):
            log.warning("one-shot posts wait in the host's journal for Redis; the next start sends them")
        if self._doubt is not None:
            log.error("one-shot queue stopped with a batch of %d post(s) whose storing Redis never confirmed",
                      len(self._doubt[1]))


def _decode_post(body: bytes) -> Post:
    time_ms, value = _EVENT.unpack_from(body)
    return body[_EVENT.size:].decode(), value, time_ms
