"""A real PostgreSQL (Debian's ``postgresql`` package) for the telemetry tests and benchmarks:
initdb in a temporary directory, ``postgres`` on a free 127.0.0.1 port, stopped by PID.
PostgreSQL refuses to run as root, so as root it runs as the ``postgres`` user the package creates."""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from typing import Iterator, List, Optional

import pytest

from servers import RealServer, ServerUnavailable


def pg_binary(name: str) -> str:
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(os.path.join(folder, name), os.X_OK):
            return os.path.join(folder, name)
    found = shutil.which(name)
    if found:
        return found
    raise ServerUnavailable(f"PostgreSQL's {name} is not installed; run .ci/install-servers.sh")


class PostgreSQL(RealServer):
    binary = "postgres"

    def __init__(self, tmpdir: Optional[os.PathLike] = None) -> None:
        self.initdb = pg_binary("initdb")
        self._user = None
        if os.geteuid() == 0:
            try:
                self._user = pwd.getpwnam("postgres")
            except KeyError:
                raise ServerUnavailable("running as root and there is no postgres user to run PostgreSQL as")
        # Our own directory (not pytest's tmp_path, which root keeps 0700): the server user owns it.
        super().__init__(tempfile.mkdtemp(prefix="statskit-pg-"))
        self._own_dir = True
        self.executable = pg_binary("postgres")
        self.data = self.dir / "data"
        if self._user is not None:
            os.chown(self.dir, self._user.pw_uid, self._user.pw_gid)

    def _as(self, argv: List[str]) -> List[str]:
        """``argv`` run as the server user when we are root (setpriv execs: the PID stays the server's)."""
        if self._user is None:
            return argv
        return [shutil.which("setpriv") or "/usr/bin/setpriv", f"--reuid={self._user.pw_uid}",
                f"--regid={self._user.pw_gid}", "--clear-groups", "--", *argv]

    def prepare(self) -> None:
        if not self.data.exists():
            subprocess.run(self._as([self.initdb, "-D", str(self.data), "-U", "statskit", "--auth=trust", "-E",
                                     "UTF8", "--no-sync", "--no-instructions"]),
                           check=True, capture_output=True, cwd=str(self.dir))

    def argv(self) -> List[str]:
        return self._as([self.executable, "-D", str(self.data), "-h", "127.0.0.1", "-p", str(self.port), "-k", str(self.dir),
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])

    @property
    def dsn(self) -> str:
        return f"postgresql://statskit@127.0.0.1:{self.port}/postgres"

    def is_ready(self) -> bool:
        import psycopg

        try:
            psycopg.connect(self.dsn, connect_timeout=1).close()
            return True
        except psycopg.OperationalError:
            return False

    def new_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://statskit@127.0.0.1:{self.port}/{name}"


# Imported by the test modules that need it (a conftest.py here would shadow tests/conftest.py,
# which other suites import as ``conftest``).
@pytest.fixture(scope="session")
def postgresql() -> Iterator[PostgreSQL]:
    """A PostgreSQL for the test module's session; each test takes its own database (``new_database``)."""
    try:
        server = PostgreSQL()
    except ServerUnavailable as exc:  # as tests/conftest.py's make_real_server: only CI insists
        if os.environ.get("CI") == "true":
            pytest.fail(f"{exc} (CI=true: real servers are required)", pytrace=False)
        pytest.skip(str(exc))
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    yield server
    server.close()
