"""The scale-out stack for W9: a throwaway PostgreSQL cluster (Debian's server binaries,
on a Unix socket in the work folder) and s3s-fs (the S3-compatible server the tests use)
over a folder, both stopped by `stop()`."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from .servers import free_port

ACCESS_KEY = "bench-access-key"
SECRET_KEY = "bench-secret-key-0123456789"
BUCKET = "gatehouse"


def pg_bindir() -> Path | None:
    """Where initdb and pg_ctl are: pg_config's bindir, else the newest Debian one."""
    candidates = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                    if Path(p).parent.name.isdigit() else 0)
    candidates += [Path(p) for p in reversed(debian)]
    return next((c for c in candidates if (c / "initdb").is_file() and (c / "pg_ctl").is_file()), None)


def s3s_fs() -> Path | None:
    found = shutil.which("s3s-fs")
    if found:
        return Path(found)
    home = Path.home() / ".cargo" / "bin" / "s3s-fs"
    return home if home.is_file() else None


def missing() -> str | None:
    """What the stack lacks on this machine, or None."""
    if pg_bindir() is None:
        return "PostgreSQL's server binaries (apt-get install postgresql)"
    if s3s_fs() is None:
        return "s3s-fs (cargo install --locked s3s-fs --version 0.14.1 --features binary)"
    return None


class Stack:
    def __init__(self, work: Path):
        self.dir = work / "scale-out"
        self.bin = pg_bindir()
        self.root = os.geteuid() == 0
        self.s3_proc: subprocess.Popen | None = None
        self.pg_started = False

    def _as_server(self, program: str) -> list[str]:
        cmd = [str(self.bin / program)]
        return ["runuser", "-u", "postgres", "--", *cmd] if self.root else cmd

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        pg = self.dir / "pg"
        pg.mkdir(exist_ok=True)
        if self.root:
            subprocess.run(["chown", "postgres:", str(pg)], check=True)
        data = pg / "data"
        subprocess.run(self._as_server("initdb") + ["-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                                                    "--locale=C.UTF-8", "--no-sync"],
                       check=True, capture_output=True)
        # Durable commits, as a production server: fsync and synchronous_commit stay on.
        options = f"-k {pg} -c listen_addresses= -c max_connections=200"
        subprocess.run(self._as_server("pg_ctl") + ["-D", str(data), "-l", str(pg / "log"), "-w", "-t", "30",
                                                    "-o", options, "start"], check=True, capture_output=True)
        self.pg_started = True
        self.database_url = f"postgres://postgres@localhost/postgres?host={pg}"
        objects = self.dir / "s3"
        (objects / BUCKET).mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        self._s3_log = open(self.dir / "s3s-fs.log", "ab")
        self.s3_proc = subprocess.Popen(
            [str(s3s_fs()), "--host", "127.0.0.1", "--port", str(port), "--access-key", ACCESS_KEY,
             "--secret-key", SECRET_KEY, str(objects)],
            stdout=self._s3_log, stderr=self._s3_log, stdin=subprocess.DEVNULL,
            env={**os.environ, "RUST_LOG": "warn", "NO_COLOR": "1"})
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.s3_proc.poll() is not None:
                    raise RuntimeError(f"s3s-fs did not start; see {self.dir / 's3s-fs.log'}")
                time.sleep(0.05)

    def config(self) -> str:
        """The sections of a replica's config file."""
        return (f'[database]\nurl = "{self.database_url}"\nmax_connections = 16\n\n'
                f'[blobs]\nurl = "s3://{BUCKET}/gatehouse"\nendpoint = "{self.endpoint}"\n')

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}

    def stop(self) -> None:
        if self.s3_proc and self.s3_proc.poll() is None:
            self.s3_proc.terminate()
            try:
                self.s3_proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.s3_proc.kill()
        if self.pg_started:
            subprocess.run(self._as_server("pg_ctl") + ["-D", str(self.dir / "pg" / "data"), "-m", "fast", "-w",
                                                        "stop"], check=False, capture_output=True)
            self.pg_started = False
