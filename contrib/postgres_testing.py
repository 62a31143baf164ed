"""A throw-away PostgreSQL server for tests and benchmarks.

Debian's `postgresql` package puts `initdb` and `pg_ctl` under
/usr/lib/postgresql/<version>/bin.  The server lives in a fresh directory,
listens on 127.0.0.1 on a free port (and a Unix socket in its directory)
and trusts local connections.  initdb refuses to run as root: as root the
server runs as the `postgres` user (the package creates it), as Core
Lightning's test framework does with its own unprivileged user."""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid


def pg_bindir() -> str | None:
    """The newest installed server's bin directory (or one on PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return os.path.dirname(found[-1])
    on_path = shutil.which("initdb")
    return os.path.dirname(on_path) if on_path else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self, fsync: bool = True) -> None:
        bindir = pg_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
        self.bindir = bindir
        self.fsync = fsync
        self.port = _free_port()
        self.dir = tempfile.mkdtemp(prefix="lnpg-")
        self.datadir = os.path.join(self.dir, "data")
        self.user = "postgres"
        self._as: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chmod(self.dir, 0o755)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self.logfile = os.path.join(self.dir, "server.log")

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(self._as + [os.path.join(self.bindir, args[0]), *args[1:]], check=check,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.dir)

    def start(self) -> None:
        if not os.path.exists(self.datadir):
            self._run("initdb", "-D", self.datadir, "-U", self.user, "--auth=trust", "--no-sync", "-E", "UTF8")
            with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
                f.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                        f"unix_socket_directories = '{self.dir}'\nmax_connections = 200\n"
                        f"fsync = {'on' if self.fsync else 'off'}\n"
                        f"synchronous_commit = {'on' if self.fsync else 'off'}\n")
        r = self._run("pg_ctl", "-D", self.datadir, "-l", self.logfile, "-w", "-t", "60", "start", check=False)
        if r.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {r.stdout.decode(errors='replace')}\n{self.log_tail()}")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", self.datadir, "-m", mode, "-w", "stop", check=False)

    def restart(self) -> None:
        self.stop()
        self.start()

    def is_running(self) -> bool:
        return self._run("pg_ctl", "-D", self.datadir, "status", check=False).returncode == 0

    def log_tail(self) -> str:
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def dsn(self, dbname: str) -> str:
        return f"postgres://{self.user}:unused@127.0.0.1:{self.port}/{dbname}"

    def create_db(self, prefix: str = "ln") -> str:
        """A new empty database; its DSN."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        for _ in range(50):
            r = subprocess.run([os.path.join(self.bindir, "psql"), "-h", "127.0.0.1", "-p", str(self.port),
                                "-U", self.user, "-d", dbname, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if r.returncode == 0:
                return r.stdout.decode()
            if b"starting up" not in r.stderr and b"could not connect" not in r.stderr:
                raise RuntimeError(f"psql {sql!r}: {r.stderr.decode(errors='replace')}")
            time.sleep(0.1)
        raise RuntimeError(f"psql {sql!r}: server not answering")

    def cleanup(self) -> None:
        if self.is_running():
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
