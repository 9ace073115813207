"""A real Redis replication set watched by Redis Sentinel, for failover tests (no pytest in here).

    with SentinelSet(tmp_path, sentinels=3) as rs:  # master + replica (AOF on) + 3 sentinels
        url = rs.url()                              # redis+sentinel://127.0.0.1:S1,.../mymaster/0
        rs.kill_master()                            # SIGKILL to the master's PID
        promoted = rs.wait_for_failover()           # the replica, once every sentinel names it

Every process is a Debian ``redis-server`` (a sentinel is ``redis-server sentinel.conf
--sentinel``) bound to 127.0.0.1 on a free port, with its files in its own directory under the
one given, and stopped by its PID at :meth:`SentinelSet.close` (see :mod:`servers`). The
sentinels monitor the master as ``mymaster`` with ``down-after-milliseconds`` 1000 and
``failover-timeout`` 3000, so a failover takes a few seconds. A missing binary raises
:class:`~servers.ServerUnavailable` from the constructor, before anything started.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from servers import HOST, PathLike, Redis, Started

SERVICE = "mymaster"


def _fields(reply: Any) -> Dict[str, str]:
    """A flat ``[name, value, ...]`` reply (SENTINEL MASTER) as a dict."""
    return dict(zip(reply[0::2], reply[1::2])) if isinstance(reply, list) else {}


def info(server: Redis, section: str = "replication") -> Dict[str, str]:
    """``INFO <section>`` as ``{field: value}``."""
    text = server.execute("INFO", section) or ""
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))


def wait_until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll ``check()`` (errors count as "not yet") until it is truthy; bounded by ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
            if last:
                return last
        except (OSError, RuntimeError) as exc:  # a server not (yet, or no longer) answering
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout:.0f} s; last {last!r}")
        time.sleep(0.05)


class Sentinel(Redis):
    """``redis-server sentinel.conf --sentinel`` monitoring ``127.0.0.1:master_port`` as ``service``."""

    def __init__(self, tmpdir: PathLike, master_port: int, quorum: int = 1, service: str = SERVICE) -> None:
        super().__init__(tmpdir)
        self.master_port = master_port
        self.quorum = quorum
        self.service = service
        self.config_path = self.dir / "sentinel.conf"

    def prepare(self) -> None:
        if self.proc is not None and self.config_path.exists():
            return  # a restart: keep what Sentinel rewrote into its config (its id, what it learnt)
        self.config_path.write_text(
            f"port {self._port}\nbind {HOST}\ndir {self.dir}\nlogfile \"\"\nloglevel notice\n"
            f"sentinel monitor {self.service} {HOST} {self.master_port} {self.quorum}\n"
            f"sentinel down-after-milliseconds {self.service} 1000\n"
            f"sentinel failover-timeout {self.service} 3000\n"
            f"sentinel parallel-syncs {self.service} 1\n")

    def argv(self) -> List[str]:
        return [self.executable, str(self.config_path), "--sentinel"]

    def is_ready(self) -> bool:
        return self.master_port_seen() is not None

    def master_port_seen(self) -> Optional[int]:
        """The port this sentinel currently names as the service's master."""
        reply = self.execute("SENTINEL", "get-master-addr-by-name", self.service)
        return int(reply[1]) if reply else None

    def view(self) -> Dict[str, str]:
        """``SENTINEL MASTER <service>``: flags, num-slaves, num-other-sentinels, ..."""
        return _fields(self.execute("SENTINEL", "MASTER", self.service))


class SentinelSet(Started):
    """A master and a replica (both AOF, fsync always) and ``sentinels`` sentinels."""

    def __init__(self, tmpdir: PathLike, sentinels: int = 3, quorum: Optional[int] = None) -> None:
        self.dir = Path(tmpdir)
        self.master = Redis(self.dir / "master", appendonly=True)
        self.replica: Optional[Redis] = None
        self.sentinels: List[Sentinel] = []
        self.count = sentinels
        self.quorum = quorum if quorum is not None else sentinels // 2 + 1

    # -- life cycle

    def start(self) -> "SentinelSet":
        self.master.start()
        self.replica = Redis(self.dir / "replica", appendonly=True,
                             extra_args=["--replicaof", HOST, str(self.master.port)]).start()
        self.wait_replicated()
        for i in range(self.count):
            self.sentinels.append(Sentinel(self.dir / f"sentinel-{i}", self.master.port, self.quorum))
            self.sentinels[-1].start()
        # Ready for a failover once every sentinel knows the replica and the other sentinels
        # (they find each other through the master within a couple of seconds).
        wait_until(lambda: all(int(s.view().get("num-slaves", 0)) == 1
                               and int(s.view().get("num-other-sentinels", 0)) == self.count - 1
                               for s in self.sentinels), "sentinels know the replica and each other")
        return self

    def close(self) -> None:
        for server in [*reversed(self.sentinels), self.replica, self.master]:
            if server is not None:
                server.close()

    # -- addresses

    def sentinel_addresses(self) -> List[str]:
        return [f"{HOST}:{s.port}" for s in self.sentinels]

    def url(self, db: int = 0) -> str:
        """``redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,.../mymaster/<db>``."""
        return f"redis+sentinel://{','.join(self.sentinel_addresses())}/{SERVICE}/{db}"

    def servers(self) -> List[Redis]:
        return [s for s in (self.master, self.replica) if s is not None]

    def current_master(self) -> Redis:
        """The data server the first sentinel names as master now."""
        port = self.sentinels[0].master_port_seen()
        return next(s for s in self.servers() if s.port == port)

    # -- what the tests do to it

    def wait_replicated(self) -> None:
        """Until the replica has everything the master has (same replication offset)."""
        def caught_up() -> bool:
            master, replica = info(self.master), info(self.replica) if self.replica else {}
            return (replica.get("master_link_status") == "up"
                    and replica.get("slave_repl_offset") == master.get("master_repl_offset"))
        wait_until(caught_up, "replica in sync with the master")

    def cut_replica(self) -> None:
        """Cut the replica off its master (a wrong ``masterauth``, then its link killed): what
        the master acknowledges from now on exists only there, and a failover loses it."""
        assert self.replica is not None
        self.replica.execute("CONFIG", "SET", "masterauth", "not-the-password")
        self.replica.execute("CLIENT", "KILL", "TYPE", "master")
        wait_until(lambda: info(self.replica).get("master_link_status") == "down", "replica cut off")

    def kill_master(self) -> Redis:
        """SIGKILL the current master (by its PID, no flush); returns it."""
        master = self.current_master()
        master.kill()
        return master

    def wait_for_failover(self, old: Redis, timeout: float = 30.0) -> Redis:
        """Until every sentinel names another master and that one answers as a master."""
        def promoted() -> Optional[Redis]:
            ports = {s.master_port_seen() for s in self.sentinels}
            if len(ports) != 1 or old.port in ports:
                return None
            new = next(s for s in self.servers() if s.port in ports)
            return new if info(new).get("role") == "master" else None
        return wait_until(promoted, "sentinels promoted the replica", timeout)
