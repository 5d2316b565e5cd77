"""A real PostgreSQL server for tests: started from the Debian package's binaries (``/usr/lib/postgresql/*/bin``)
on 127.0.0.1 (a free port; its Unix socket in its own temp dir), one per test session, stopped at the end.

As root (CI), ``initdb`` and ``pg_ctl`` run as an unprivileged user (``postgres`` if the package created it,
else ``nobody``) that owns the data dir. Skips, with the reason printed, when the binaries, the driver
(``psycopg``, the ``[postgres]`` extra) or an unprivileged user are missing.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["PgServer", "pg_server"]


@dataclass
class PgServer:
    """A running server: ``url`` (SQLAlchemy/Optuna, psycopg 3), and how to restart or stop it."""

    bindir: Path
    datadir: Path
    port: int
    user: str | None
    log: Path

    def url(self, db: str = "cachesearch") -> str:
        return f"postgresql+psycopg://cachesearch@127.0.0.1:{self.port}/{db}"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd="/")

    def ctl(self, action: str, *extra: str) -> None:
        res = self._run("pg_ctl", action, "-D", str(self.datadir), "-l", str(self.log), "-w", "-t", "30", *extra)
        if res.returncode != 0:
            raise RuntimeError(f"pg_ctl {action} failed: {res.stdout}{res.stderr}{self._log_tail()}")

    def createdb(self, name: str) -> str:
        res = self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "cachesearch", name)
        if res.returncode != 0:
            raise RuntimeError(f"createdb {name} failed: {res.stderr}")
        return self.url(name)

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n" + self.log.read_text(errors="replace")[-2000:]
        return ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _skip(reason: str) -> None:
    print(f"\nPostgreSQL tests skipped: {reason}", file=sys.stderr)
    pytest.skip(reason)


def _unprivileged() -> str | None:
    """The user to run the server as: None when not root, else ``postgres`` or ``nobody``."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    return None


@contextlib.contextmanager
def start_server() -> Iterator[PgServer]:
    """Start a throw-away server (initdb, pg_ctl start, createdb cachesearch); stop and delete it at the end."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        _skip("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb); apt-get install postgresql")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _skip("the PostgreSQL driver is missing: pip install 'cachesearch[postgres]' (psycopg[binary])")
    user = _unprivileged()
    if os.geteuid() == 0 and (user is None or shutil.which("runuser") is None):
        _skip("running as root without an unprivileged user or runuser: initdb refuses root")
    bindir = Path(found[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="cs-pg-", dir="/tmp"))  # not under pytest's 0700 root-owned tmp dir
    datadir, sockdir = root / "data", root / "sock"
    sockdir.mkdir()
    if user is not None:
        info = pwd.getpwnam(user)
        for p in (root, sockdir):
            os.chown(p, info.pw_uid, info.pw_gid)
    os.chmod(root, 0o755)
    server = PgServer(bindir=bindir, datadir=datadir, port=_free_port(), user=user, log=root / "server.log")
    try:
        res = server._run("initdb", "-D", str(datadir), "-U", "cachesearch", "--auth=trust", "-E", "UTF8",
                          "--no-sync", timeout=120)
        if res.returncode != 0:
            _skip(f"initdb failed: {res.stderr.strip()[-500:]}")
        with open(datadir / "postgresql.conf", "a", encoding="utf-8") as f:
            f.write(f"\nlisten_addresses = '127.0.0.1'\nport = {server.port}\nunix_socket_directories = '{sockdir}'\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 100\n"
                    "shared_buffers = 32MB\n")
        if user is not None:
            info = pwd.getpwnam(user)
            os.chown(datadir / "postgresql.conf", info.pw_uid, info.pw_gid)
            with contextlib.suppress(FileNotFoundError):
                server.log.touch()
                os.chown(server.log, info.pw_uid, info.pw_gid)
        server.ctl("start")
        server.createdb("cachesearch")
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.ctl("stop", "-m", "immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server for the session (skips with the reason printed when it cannot start)."""
    with start_server() as server:
        yield server
