"""Following a real log folder written as Caddy (and logrotate) write it: every complete line
is counted exactly once, whatever happens to the files, the process or the transaction."""
from __future__ import annotations

import gzip
import os
import shutil

import orjson
import pytest

from statskit.kpi.inputs import Generators
from statskit.kpi.packages import load_packages
from statskit.kpi.runner import Processor
from statskit.kpi.store import SCHEMA, counters
from statskit.kpi.tailer import Tailer
from statskit.state.sqlite import SQLiteDB

from kpi_support import caddy, ts, write_packages

T0 = ts(2024, 5, 6, 10, 0)


class Box:
    """A data dir, a log folder and a processor on them, stepped by hand (no thread)."""

    def __init__(self, root, max_line_bytes=4096, generators=None, legacy_state_dir="", read_gzip=False):
        self.read_gzip = read_gzip
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir(exist_ok=True)
        self.db = SQLiteDB(str(root / "kpi.db"))
        self.db.ensure_schema(SCHEMA)
        self.generators = generators or Generators(load_packages(str(write_packages(root))).packages)
        self.max_line_bytes = max_line_bytes
        self.legacy_state_dir = legacy_state_dir
        self.processor = self.new_processor()

    def new_processor(self):
        tailer = Tailer(str(self.logs), "caddy_access_logs*.json", self.max_line_bytes, chunk_bytes=8192,
                        read_gzip=self.read_gzip)
        return Processor(self.db, tailer, self.generators, str(self.root / "kpi.lock"), inactivity=1e9,
                         legacy_state_dir=self.legacy_state_dir)

    def step(self):
        if not self.processor.ready:
            assert self.processor.acquire()
        while self.processor.step():
            pass

    def restart(self):
        """A new process: nothing kept but the database (the old one's lock is dropped, as by a crash)."""
        self.processor.lock.release()
        self.processor = self.new_processor()

    def counted(self, name="lines", reason="accepted"):
        return {(n, r): v for n, r, v in counters(self.db.connection())}.get((name, reason), 0)

    def visits(self):
        """Home visits so far (states of the open hour + records), by package."""
        rows = self.db.connection().execute(
            "SELECT d.value0, SUM(x.v) FROM (SELECT dimension_id, value AS v FROM indicator_record WHERE indicator_id = 1001 "
            "UNION ALL SELECT dimension_id, CAST(state AS INTEGER) FROM indicator_state WHERE indicator_id = 1001) x "
            "JOIN indicator_dimension d ON d.id = x.dimension_id GROUP BY d.value0")
        return dict(rows)


def lines(n, start=0, host="kiwix.box.test", uri="/content/wikipedia_fr_all/"):
    return b"".join(caddy(T0 + 7 * (start + i), host=host, uri=uri) for i in range(n))


@pytest.fixture
def box(tmp_path):
    made = Box(tmp_path)
    yield made
    made.processor.close(1)
    made.db.close()


def test_appended_lines_are_read_once_and_a_partial_last_line_waits(box):
    log = box.logs / "caddy_access_logs.json"
    partial = caddy(T0 + 500, uri="/content/gutenberg_en/")
    log.write_bytes(lines(3) + partial[:20])
    box.step()
    assert box.visits() == {"Wikipédia": 3}
    with open(log, "ab") as handle:
        handle.write(partial[20:] + lines(2, 10))
    box.step()
    box.step()
    assert box.visits() == {"Wikipédia": 5, "Gutenberg": 1}
    assert box.counted() == 6


def test_rename_and_create_rotation_reads_the_old_file_to_its_end(box):
    log = box.logs / "caddy_access_logs.json"
    log.write_bytes(lines(4))
    box.step()
    with open(log, "ab") as handle:  # written after the last read, before the rotation
        handle.write(lines(3, 4))
    os.rename(log, box.logs / "caddy_access_logs-2024-05-06T10-05-00.000.json")
    log.write_bytes(lines(2, 7))
    box.step()
    assert box.visits() == {"Wikipédia": 9}
    paths = sorted(p for p, in box.db.connection().execute("SELECT path FROM log_file"))
    assert [os.path.basename(p) for p in paths] == ["caddy_access_logs-2024-05-06T10-05-00.000.json",
                                                    "caddy_access_logs.json"]


def test_a_file_renamed_out_of_the_pattern_is_still_read_to_its_end(box):
    log = box.logs / "caddy_access_logs.json"
    log.write_bytes(lines(4))
    box.step()
    with open(log, "ab") as handle:
        handle.write(lines(3, 4))
    os.rename(log, box.logs / "caddy_access_logs.json.1")  # logrotate's create mode
    log.write_bytes(lines(2, 7))
    box.step()
    assert box.visits() == {"Wikipédia": 9}
    box.step()  # read to its end: no longer followed
    assert [os.path.basename(p) for p, in box.db.connection().execute("SELECT path FROM log_file")] == [
        "caddy_access_logs.json"]


def test_copytruncate_is_a_new_file_even_when_it_grew_past_the_old_offset(box):
    log = box.logs / "caddy_access_logs.json"
    log.write_bytes(lines(3))
    box.step()
    shutil.copy(log, box.logs / "caddy_access_logs.json.1")  # logrotate's copy: not matched by the pattern
    with open(log, "r+b") as handle:  # truncated in place (same inode), then Caddy writes on
        handle.truncate(0)
        handle.write(lines(5, 3, uri="/content/gutenberg_en/"))
    box.step()
    assert box.visits() == {"Wikipédia": 3, "Gutenberg": 5}


def test_truncation_resets_the_offset(box):
    log = box.logs / "caddy_access_logs.json"
    log.write_bytes(lines(3))
    box.step()
    log.write_bytes(b"")  # truncated, nothing yet
    box.step()
    log.write_bytes(lines(1, 3))
    box.step()
    assert box.visits() == {"Wikipédia": 4}


def test_a_deleted_file_is_forgotten_and_a_new_one_at_its_path_is_read_from_the_start(box):
    log = box.logs / "caddy_access_logs.json"
    log.write_bytes(lines(3))
    box.step()
    log.unlink()
    box.step()
    assert box.db.connection().execute("SELECT COUNT(*) FROM log_file").fetchone()[0] == 0
    log.write_bytes(lines(5, 3))  # may well get the same inode back
    box.step()
    assert box.visits() == {"Wikipédia": 8}


def test_files_in_subfolders_are_found_and_other_files_ignored(box):
    (box.logs / "site-a").mkdir()
    (box.logs / "site-a" / "caddy_access_logs.json").write_bytes(lines(2))
    (box.logs / "caddy_access_logs.json.gz").write_bytes(lines(4))  # gzip-rotated: ignored
    (box.logs / "error.log").write_bytes(lines(4))
    box.step()
    assert box.visits() == {"Wikipédia": 2}


def test_bad_lines_are_skipped_and_counted_by_reason(box):
    log = box.logs / "caddy_access_logs.json"
    long_line = caddy(T0, uri="/content/wikipedia_fr_all/?" + "x" * 10000)
    other = orjson.dumps({"level": "info", "msg": "started"}) + b"\n"
    log.write_bytes(lines(1) + b"garbage\n" + long_line + other + "é\n".encode() + lines(1, 1))
    box.step()
    assert box.visits() == {"Wikipédia": 2}
    assert box.counted("lines_skipped", "too_long") == 1
    assert box.counted("lines_skipped", "not_json") == 2
    assert box.counted("lines_skipped", "not_handled_request") == 1


def test_a_line_with_an_impossible_time_is_skipped_and_the_processing_goes_on(box):
    log = box.logs / "caddy_access_logs.json"
    log.write_bytes(lines(1) + caddy(1e300) + caddy(-1e18) + lines(1, 1))
    box.step()
    log.write_bytes(log.read_bytes() + lines(1, 2))
    box.step()
    assert box.visits() == {"Wikipédia": 3}
    assert box.counted("lines_skipped", "bad_timestamp") == 2


def test_a_long_line_still_being_written_is_skipped_once_it_ends(box):
    log = box.logs / "caddy_access_logs.json"
    log.write_bytes(lines(1) + b'{"level":"info","x":"' + b"y" * 20000)
    box.step()
    with open(log, "ab") as handle:
        handle.write(b'"}\n' + lines(1, 1))
    box.step()
    assert box.visits() == {"Wikipédia": 2}
    assert box.counted("lines_skipped", "too_long") == 1


def test_multibyte_utf8_split_across_reads_is_intact(box):
    log = box.logs / "caddy_access_logs.json"
    line = caddy(T0, host="files.box.test", uri="/")
    line = line.replace(b'"Mozilla/5.0"', '"Мозилла ☃ 🦊"'.encode())
    cut = line.index("☃".encode()) + 1  # in the middle of a character
    log.write_bytes(line[:cut])
    box.step()
    with open(log, "ab") as handle:
        handle.write(line[cut:])
    box.step()
    assert box.visits() == {"Files": 1}
    assert box.counted("lines_skipped", "not_json") == 0


class FailOnce(Generators):
    """Fails in the middle of a batch, once: as a crash or a full disk would."""

    def __init__(self, packages, fail_at):
        super().__init__(packages)
        self.calls, self.fail_at = 0, fail_at

    def inputs_of(self, fields):
        self.calls += 1
        if self.calls == self.fail_at:
            raise OSError("disk full")
        return super().inputs_of(fields)


def test_a_failure_mid_batch_commits_nothing_and_the_retry_counts_each_line_once(tmp_path):
    packages = load_packages(str(write_packages(tmp_path))).packages
    box = Box(tmp_path, generators=FailOnce(packages, fail_at=2))  # the second minute's first request
    (box.logs / "caddy_access_logs.json").write_bytes(lines(10))
    box.processor.acquire()
    with pytest.raises(OSError):
        box.processor.step()
    assert box.counted() == 0 and box.visits() == {}  # rolled back with its offset
    box.processor.ready = False  # what the loop does after a failure: reload from the database
    box.step()
    assert box.counted() == 10 and box.visits() == {"Wikipédia": 10}
    box.processor.close(1)


def test_a_restart_resumes_from_the_committed_offsets(box):
    log = box.logs / "caddy_access_logs.json"
    log.write_bytes(lines(4))
    box.step()
    box.restart()
    with open(log, "ab") as handle:
        handle.write(lines(3, 4))
    box.step()
    assert box.visits() == {"Wikipédia": 7}


def test_only_one_processor_per_data_dir_tails(box):
    assert box.processor.acquire()
    other = box.new_processor()
    assert not other.acquire()
    box.processor.close(1)  # the holder stops (or dies): the other takes over
    assert other.acquire()
    other.close(1)


def test_the_originals_offsets_are_imported_once(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "caddy_access_logs.json"
    log.write_bytes(lines(5))
    already = len(lines(3))
    (tmp_path / "log_watcher_state.json").write_bytes(orjson.dumps(
        {"file_pointers": {str(log): already, str(logs / "gone.json"): 10}}))
    box = Box(tmp_path, legacy_state_dir=str(tmp_path))
    box.step()
    assert box.visits() == {"Wikipédia": 2}  # the first 3 were counted by the original
    box.restart()
    box.step()
    assert box.visits() == {"Wikipédia": 2}
    box.processor.close(1)


def test_gzip_rotated_files_when_configured_continue_the_file_they_were_compressed_from(tmp_path):
    box = Box(tmp_path, read_gzip=True)
    (box.logs / "caddy_access_logs-old.json.gz").write_bytes(gzip.compress(lines(30, 1000)))  # older roll
    log = box.logs / "caddy_access_logs.json"
    log.write_bytes(lines(40))
    box.step()
    assert box.visits() == {"Wikipédia": 70}
    with open(log, "ab") as handle:  # written, not yet read, when Caddy rolls and compresses
        handle.write(lines(25, 40))
    rolled = box.logs / "caddy_access_logs-2024-05-06T11-00-00.000.json"
    os.rename(log, rolled)
    (box.logs / (rolled.name + ".gz")).write_bytes(gzip.compress(rolled.read_bytes()))
    rolled.unlink()
    box.step()
    box.step()
    assert box.visits() == {"Wikipédia": 95}  # the 25 once, from the .gz
    box.restart()  # a .gz read to its end is not read again
    box.step()
    assert box.visits() == {"Wikipédia": 95}
    box.processor.close(1)


def test_gzip_files_are_ignored_by_default(box):
    (box.logs / "caddy_access_logs-old.json.gz").write_bytes(gzip.compress(lines(30)))
    box.step()
    assert box.visits() == {}


def space_separated(raw):
    """A third-party log format: ``<ts> <host> <uri>`` lines."""
    from statskit.kpi.inputs import Skipped

    parts = raw.decode().split(" ")
    if len(parts) != 3:
        raise Skipped("not_handled_request")
    return float(parts[0]), parts[1], parts[2], "GET", 200, {}


def test_another_log_format_feeds_the_same_engine(box):
    box.processor.parse = space_separated
    (box.logs / "caddy_access_logs.json").write_bytes(
        f"{T0} files.box.test /\n{T0 + 5} files.box.test /x.pdf\nnonsense\n".encode())
    box.step()
    assert box.visits() == {"Files": 1}
    assert box.counted("lines_skipped", "not_handled_request") == 1
