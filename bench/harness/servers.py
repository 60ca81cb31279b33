"""Starting, measuring and stopping the two registries under test.

Both listen on 127.0.0.1 only, with fresh storage in a directory the run owns.
Every process started here is stopped by its own PID (never by name).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from . import http

ADMIN_USER = "admin"
ADMIN_PASSWORD = "bench-admin-password-1"
STARTUP_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM of a process in bytes (empty when it is gone)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class Server:
    """One registry process. Subclasses know how to start and log in."""

    kind = "?"

    def __init__(self, label: str, workdir: Path):
        self.label = label
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.root = ""  # http://127.0.0.1:PORT
        self.base = ""  # registry URL with trailing slash, as npm's `registry=`
        self.token = ""
        self.startup_ms: float | None = None
        self._log = None

    # --- lifecycle -------------------------------------------------------------------
    def start(self) -> float:
        raise NotImplementedError

    def login(self) -> str:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        if self._log:
            self._log.close()
            self._log = None

    def _wait_until_answering(self, started: float) -> float:
        """Polls `/-/ping` on the registry until it answers 200; returns ms since `started`."""
        deadline = started + STARTUP_TIMEOUT_S
        url = self.ping_url()
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited during start-up; see {self.log_path}")
            try:
                status, _, _ = http.request("GET", url, timeout=2.0)
                if status == 200:
                    return (time.monotonic() - started) * 1000.0
            except OSError:
                pass
            time.sleep(0.002)
        raise RuntimeError(f"{self.label} did not answer within {STARTUP_TIMEOUT_S}s; see {self.log_path}")

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.label}.log"

    def ping_url(self) -> str:
        return self.base + "-/ping"

    # --- what requests need ------------------------------------------------------------
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def packument_url(self, name: str) -> str:
        return self.base + name.replace("/", "%2f")

    # --- memory ------------------------------------------------------------------------
    def rss(self) -> int:
        return proc_status(self.pid).get("VmRSS", 0)

    def hwm(self) -> int:
        return proc_status(self.pid).get("VmHWM", 0)

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used."""
        return proc_cpu_seconds(self.pid)

    def settle(self, max_s: float = 30.0) -> float:
        """Waits until the process is idle (under 5% of a core over 200 ms), so work
        queued by one load test does not spill into the next. Returns seconds waited."""
        started = time.monotonic()
        last = self.cpu_seconds()
        while time.monotonic() - started < max_s:
            time.sleep(0.2)
            now = self.cpu_seconds()
            if now - last < 0.01:
                break
            last = now
        return time.monotonic() - started

    def reset_hwm(self) -> bool:
        """Resets the kernel's peak-RSS mark (VmHWM) so a later read covers one phase only."""
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w", encoding="ascii") as f:
                f.write("5")
            return True
        except OSError:
            return False


class Gatehouse(Server):
    kind = "gatehouse"

    def __init__(self, label: str, workdir: Path, binary: Path, config_toml: str | None = None,
                 env: dict[str, str] | None = None):
        super().__init__(label, workdir)
        self.binary = binary
        self.config_toml = config_toml
        # For a replica on the scale-out stack: the bucket's credentials (and no AWS_*
        # of the caller's own).
        self.extra_env = env
        self.data_dir = workdir / f"{label}-data"

    def start(self) -> float:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_")}
        if self.extra_env is not None:
            env = {k: v for k, v in env.items() if not k.startswith("AWS_")} | self.extra_env
        env["GATEHOUSE_ADMIN_PASSWORD"] = ADMIN_PASSWORD
        if self.config_toml is not None:
            cfg = self.workdir / f"{self.label}.toml"
            cfg.write_text(self.config_toml)
            env["GATEHOUSE_CONFIG"] = str(cfg)
        self._log = open(self.log_path, "ab")
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [str(self.binary), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(self.data_dir)],
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline().decode("utf-8", "replace").strip()
        prefix = "gatehouse listening on "
        if not first.startswith(prefix):
            self.proc.wait(timeout=10)
            raise RuntimeError(f"{self.label}: unexpected first line {first!r}; see {self.log_path}")
        self.root = first[len(prefix):].split()[0].rstrip("/")
        self.base = self.root + "/r/default/"
        stdout = self.proc.stdout
        threading.Thread(target=lambda: [None for _ in stdout], daemon=True).start()
        self.startup_ms = self._wait_until_answering(started)
        return self.startup_ms

    def login(self) -> str:
        body = json.dumps({"_id": f"org.couchdb.user:{ADMIN_USER}", "name": ADMIN_USER,
                           "password": ADMIN_PASSWORD, "type": "user", "roles": []}).encode()
        status, _, data = http.request("PUT", self.base + f"-/user/org.couchdb.user:{ADMIN_USER}",
                                       {"Content-Type": "application/json"}, body)
        if status != 201:
            raise RuntimeError(f"{self.label} login: HTTP {status}: {data[:300]!r}")
        self.token = json.loads(data)["token"]
        return self.token


VERDACCIO_PACKAGES_PROXY = """\
  '@*/*':
    access: $authenticated
    publish: $authenticated
    proxy: npmjs
  '**':
    access: $authenticated
    publish: $authenticated
    proxy: npmjs
"""

VERDACCIO_PACKAGES_LOCAL = """\
  '@*/*':
    access: $authenticated
    publish: $authenticated
  '**':
    access: $authenticated
    publish: $authenticated
"""


class Verdaccio(Server):
    """Verdaccio 6 with htpasswd auth, reads limited to logged-in users like Gatehouse's
    private `default` registry. With `upstream`, every package proxies to it (its
    default uplink behaviour); without, it serves only what was published to it."""

    kind = "verdaccio"

    def __init__(self, label: str, workdir: Path, node: Path, entry: Path, upstream: str | None,
                 cafile: str | None = None):
        super().__init__(label, workdir)
        self.node = node
        self.entry = entry
        self.upstream = upstream
        self.storage = workdir / f"{label}-storage"
        self.cafile = cafile

    def config_yaml(self) -> str:
        uplinks = f"uplinks:\n  npmjs:\n    url: {self.upstream}\n" if self.upstream else "uplinks: {}\n"
        packages = VERDACCIO_PACKAGES_PROXY if self.upstream else VERDACCIO_PACKAGES_LOCAL
        return (
            f"storage: {self.storage}\n"
            "auth:\n  htpasswd:\n"
            f"    file: {self.workdir / (self.label + '.htpasswd')}\n"
            "    max_users: 1000\n"
            f"{uplinks}"
            f"packages:\n{packages}"
            "server:\n  keepAliveTimeout: 60\n"
            # Generous limits so neither the publish workload nor logins hit Verdaccio's rate limiter.
            "userRateLimit:\n  windowMs: 1000\n  max: 100000\n"
            "max_body_size: 200mb\n"
            # JWT API tokens: checked with an HMAC. Verdaccio's default (legacy) tokens carry
            # the password and re-verify it with bcrypt on every request (~15 req/s here).
            "security:\n  api:\n    legacy: false\n    jwt:\n      sign:\n        expiresIn: 7d\n"
            # Only warnings: Verdaccio's default (`http`) logs every request, a cost not measured here.
            "log: { type: stdout, format: pretty, level: warn }\n"
            "web:\n  enable: false\n"
        )

    def start(self) -> float:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / f"{self.label}.yaml"
        cfg.write_text(self.config_yaml())
        port = free_port()
        self.root = f"http://127.0.0.1:{port}"
        self.base = self.root + "/"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("npm_", "NODE_OPTIONS"))}
        env["NODE_ENV"] = "production"
        if self.cafile and "NODE_EXTRA_CA_CERTS" not in env:
            # Trust what npm trusts when reaching the upstream (npm's `cafile`).
            env["NODE_EXTRA_CA_CERTS"] = self.cafile
        self._log = open(self.log_path, "ab")
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [str(self.node), str(self.entry), "-c", str(cfg), "-l", f"127.0.0.1:{port}"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        self.startup_ms = self._wait_until_answering(started)
        return self.startup_ms

    def login(self) -> str:
        body = json.dumps({"_id": f"org.couchdb.user:{ADMIN_USER}", "name": ADMIN_USER,
                           "password": ADMIN_PASSWORD, "type": "user", "roles": []}).encode()
        url = self.base + f"-/user/org.couchdb.user:{ADMIN_USER}"
        status, _, data = http.request("PUT", url, {"Content-Type": "application/json"}, body)
        if status == 409:
            # The user exists (a restart): Verdaccio logs in a caller who also sends Basic auth.
            basic = base64.b64encode(f"{ADMIN_USER}:{ADMIN_PASSWORD}".encode()).decode()
            status, _, data = http.request("PUT", url, {"Content-Type": "application/json",
                                                        "Authorization": f"Basic {basic}"}, body)
        if status not in (200, 201):
            raise RuntimeError(f"{self.label} login: HTTP {status}: {data[:300]!r}")
        self.token = json.loads(data)["token"]
        return self.token


class MemorySampler:
    """Samples VmRSS of some processes every `interval` seconds in a thread; `peak()`
    per label. Complements VmHWM (exact, but needs clear_refs to scope it to a phase)."""

    def __init__(self, servers: list[Server], interval: float = 0.05):
        self.servers = servers
        self.interval = interval
        self.peaks = {s.label: 0 for s in servers}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for s in self.servers:
                if s.alive():
                    self.peaks[s.label] = max(self.peaks[s.label], s.rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
