"""Following access logs as they grow: which files, from which byte, which complete lines.

A file is known by its identity, not its path: device + inode, plus a fingerprint (SHA-1 of its
first bytes, up to :data:`FINGERPRINT_BYTES`, extended as the file grows). So:

* a renamed file (rename-and-create rotation) keeps its offset and is read to its end;
* a reused inode, or a file emptied and rewritten (copytruncate), has other first bytes: it is a
  new file read from 0, never skipped to the old offset;
* a file shorter than its offset was truncated: read from 0 (the original's rule);
* a file no longer found is forgotten; a new file is read from its start.

Only ``\\n``-terminated lines are returned. A line longer than ``max_line_bytes`` is skipped
(and counted) once its end is seen. Offsets live in the ``log_file`` table and are written by
:meth:`Tailer.commit` in the caller's transaction, beside the effects of the lines.
"""
from __future__ import annotations

import fnmatch
import gzip
import hashlib
import logging
import os
import sqlite3
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

log = logging.getLogger("statskit.kpi")

FINGERPRINT_BYTES = 1024


@dataclass
class LogFile:
    dev: int
    ino: int
    fp_len: int
    fp_hash: str
    path: str
    offset: int  # for a .gz file: in its decompressed content
    size: int = 0
    done: bool = False  # a .gz file read to its end (in this process)

    @property
    def gz(self) -> bool:
        return self.path.endswith(".gz")


def _fingerprint(path: str, length: int) -> Tuple[int, str]:
    with open(path, "rb") as handle:
        head = handle.read(length)
    return len(head), hashlib.sha1(head).hexdigest()


@dataclass
class Chunk:
    """Complete lines read from one file: ``lines`` end at ``end`` (the next offset)."""

    file: LogFile
    lines: List[bytes]
    end: int
    too_long: int = 0
    more: bool = False  # more complete lines may follow right away


class Tailer:
    def __init__(self, logs_dir: str, pattern: str, max_line_bytes: int = 64 * 1024,
                 chunk_bytes: int = 1 << 20, read_gzip: bool = False) -> None:
        self.logs_dir = logs_dir
        self.pattern = pattern
        self.read_gzip = read_gzip
        self._gz: Dict[Tuple[int, int], Tuple[gzip.GzipFile, int]] = {}  # open .gz files and their position
        self._recent: Dict[str, LogFile] = {}  # forgotten plain files, by fingerprint: a .gz may continue one
        self.max_line_bytes = max_line_bytes
        self.chunk_bytes = max(chunk_bytes, 2 * max_line_bytes + 2)
        self.files: Dict[Tuple[int, int], LogFile] = {}
        self.forgotten: List[Tuple[int, int]] = []

    # ------------------------------------------------------------------ state
    def load(self, conn: sqlite3.Connection) -> None:
        self.files = {(dev, ino): LogFile(dev, ino, fp_len, fp_hash, path, offset)
                      for dev, ino, fp_len, fp_hash, path, offset in
                      conn.execute("SELECT dev, ino, fp_len, fp_hash, path, offset FROM log_file")}

    def commit(self, conn: sqlite3.Connection, changed: List[LogFile]) -> None:
        """Write the offsets (and identities) of ``changed`` and forget the vanished files."""
        for key in self.forgotten:
            conn.execute("DELETE FROM log_file WHERE dev = ? AND ino = ?", key)
        self.forgotten = []
        conn.executemany(
            "INSERT INTO log_file (dev, ino, fp_len, fp_hash, path, offset) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (dev, ino) DO UPDATE SET fp_len = excluded.fp_len, fp_hash = excluded.fp_hash, "
            "path = excluded.path, offset = excluded.offset",
            [(f.dev, f.ino, f.fp_len, f.fp_hash, f.path, f.offset) for f in changed])

    # ------------------------------------------------------------------ discovery
    def paths(self) -> List[str]:
        return self._walk()[0]

    def _walk(self) -> Tuple[List[str], List[str]]:
        """The files to follow, and the other files (where a followed file may have been
        renamed to, e.g. logrotate's ``.1``)."""
        found: List[Any] = []
        others: List[Any] = []
        for folder, dirs, names in os.walk(self.logs_dir):
            dirs.sort()
            for name in sorted(names):
                matched = fnmatch.fnmatchcase(name, self.pattern) or (
                    self.read_gzip and name.endswith(".gz") and fnmatch.fnmatchcase(name[:-3], self.pattern))
                (found if matched else others).append(os.path.join(folder, name))
        return found, others

    def scan(self) -> List[LogFile]:
        """Match the files on disk to the known ones; returns those whose identity, path or
        offset changed (to be committed) and updates :attr:`files`."""
        changed: List[LogFile] = []
        seen: Dict[Tuple[int, int], LogFile] = {}
        paths, others = self._walk()
        for path in paths:
            self._see(path, seen, changed, new=True)
        if others and any(key not in seen and not known.done for key, known in self.files.items()):
            # A followed file renamed out of the pattern is still read to its end (not new ones).
            for path in others:
                self._see(path, seen, changed, new=False)
        for key, known in self.files.items():
            if key not in seen:
                log.info("log file %s is gone; forgotten", known.path)
                self.forgotten.append(key)
                if self.read_gzip and not known.gz:
                    self._recent[known.fp_hash] = known
                    while len(self._recent) > 100:
                        self._recent.pop(next(iter(self._recent)))
                handle = self._gz.pop(key, None)
                if handle is not None:
                    handle[0].close()
        self.files = seen
        return changed

    def _see(self, path: str, seen: Dict[Tuple[int, int], LogFile], changed: List[LogFile], new: bool) -> None:
        try:
            st = os.stat(path)
            key = (st.st_dev, st.st_ino)
            known = self.files.get(key)
            if key in seen or (known is None and not new):  # a hard link to a file already seen
                return
            if known is None and path.endswith(".gz"):
                current = self._new_gz(path, st.st_dev, st.st_ino)
                if current is None:
                    return
            else:
                current = self._identify(path, st.st_size, known)
        except (OSError, EOFError):  # vanished between the listing and the stat; a broken .gz
            return
        if not new and current.offset >= st.st_size:
            return  # read to its end: forgotten now
        current.size = st.st_size
        seen[key] = current
        if current is not known:
            changed.append(current)

    def _identify(self, path: str, size: int, known: Optional[LogFile]) -> LogFile:
        st = os.stat(path)
        if known is not None:
            fp_len, fp_hash = _fingerprint(path, known.fp_len)
            if fp_len == known.fp_len and fp_hash == known.fp_hash:
                if size < known.offset and not known.gz:
                    log.info("log file %s was truncated; reading it from the start", path)
                    return self._new(path, st.st_dev, st.st_ino)
                if known.path != path or (known.fp_len < FINGERPRINT_BYTES and size > known.fp_len):
                    fp_len, fp_hash = _fingerprint(path, FINGERPRINT_BYTES)
                    if known.path != path:
                        log.info("log file %s moved to %s; following it", known.path, path)
                    return LogFile(known.dev, known.ino, fp_len, fp_hash, path, known.offset)
                return known
            log.info("log file %s is not the file it was (other first bytes); reading it from the start", path)
        return self._new(path, st.st_dev, st.st_ino)

    def _new_gz(self, path: str, dev: int, ino: int) -> Optional[LogFile]:
        """A new .gz file: read from the start, or from where the plain file it was compressed
        from stopped (same first bytes once decompressed); None while that file still exists."""
        with gzip.open(path, "rb") as handle:
            head = handle.read(FINGERPRINT_BYTES)
        offset = 0
        for plain in list(self.files.values()) + list(self._recent.values()):
            if not plain.gz and plain.fp_len <= len(head) and hashlib.sha1(head[:plain.fp_len]).hexdigest() == plain.fp_hash:
                if plain.fp_hash not in self._recent:
                    return None  # still there: read it to its end first
                offset = self._recent.pop(plain.fp_hash).offset
                log.info("%s continues %s from byte %d", path, plain.path, offset)
                break
        found = self._new(path, dev, ino)
        found.offset = offset
        return found

    @staticmethod
    def _new(path: str, dev: int, ino: int) -> LogFile:
        fp_len, fp_hash = _fingerprint(path, FINGERPRINT_BYTES)
        return LogFile(dev, ino, fp_len, fp_hash, path, 0)

    # ------------------------------------------------------------------ reading
    def read(self, file: LogFile, max_bytes: Optional[int] = None) -> Optional[Chunk]:
        """The complete lines after ``file.offset`` (at most about ``max_bytes``), or None."""
        if file.gz:
            return self._read_gz(file)
        if file.size <= file.offset:
            return None
        limit = max_bytes or self.chunk_bytes
        try:
            with open(file.path, "rb") as handle:
                handle.seek(file.offset)
                data = handle.read(max(limit, self.chunk_bytes))
                end = data.rfind(b"\n")
                if end < 0:
                    return self._skip_long(handle, file, len(data))
        except OSError:
            return None
        lines = data[:end].split(b"\n")
        too_long = 0
        if lines and max(map(len, lines)) > self.max_line_bytes:
            kept = [line for line in lines if len(line) <= self.max_line_bytes]
            too_long, lines = len(lines) - len(kept), kept
        end += file.offset + 1
        return Chunk(file, lines, end, too_long, end < file.size)

    def _read_gz(self, file: LogFile) -> Optional[Chunk]:
        """The next chunk of a compressed (complete) file; its last line needs no newline."""
        if file.done:
            return None
        key = (file.dev, file.ino)
        handle, position = self._gz.pop(key, (None, -1))
        try:
            if handle is None or position != file.offset:
                if handle is not None:
                    handle.close()
                handle = gzip.open(file.path, "rb")
                handle.seek(file.offset)
            data = handle.read(self.chunk_bytes)
            if len(data) < self.chunk_bytes:
                file.done = True
                handle.close()
                if data and not data.endswith(b"\n"):
                    data += b"\n"
            else:
                self._gz[key] = (handle, file.offset)
        except (OSError, EOFError) as exc:
            log.warning("cannot read %s: %s", file.path, exc)
            file.done = True
            return None
        end = data.rfind(b"\n")
        if end < 0:
            if not file.done:  # one line longer than a chunk: skipped
                self._gz.pop(key, None)
                file.done = True
            return None
        lines = [line for line in data[:end].split(b"\n") if len(line) <= self.max_line_bytes]
        chunk = Chunk(file, lines, file.offset + end + 1, data.count(b"\n") - len(lines), not file.done)
        if key in self._gz:
            self._gz[key] = (handle, file.offset + len(data))
        return chunk

    def _skip_long(self, handle: Any, file: LogFile, read: int) -> Optional[Chunk]:
        """No newline in the first chunk: past the limit, look for the line's end and skip it."""
        if read <= self.max_line_bytes:
            return None  # an incomplete line still within the limit: wait for its end
        position = file.offset + read
        while True:
            data = handle.read(self.chunk_bytes)
            if not data:
                return None  # its end is not written yet
            found = data.find(b"\n")
            if found >= 0:
                end = position + found + 1
                return Chunk(file, [], end, 1, end < file.size)
            position += len(data)
