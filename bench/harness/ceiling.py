"""W10: the physical ceiling. nginx serves the documents and tarballs Gatehouse serves,
as static files from the same machine (`sendfile`, `gzip_static` with precompressed
copies), so every Gatehouse rate has the rate of a server that does no work but moving
bytes next to it.

The files are Gatehouse's own answers, byte for byte: the JSON it serves without gzip,
the gzip it serves (as the `.gz` copy `gzip_static` sends), and the tarballs.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from . import http, seed
from .servers import Server, free_port, proc_cpu_seconds, proc_status

NGINX_CONF = """\
{user}worker_processes {workers};
daemon off;
master_process on;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    gzip_static on;
    types {{ application/json json; application/octet-stream tgz; }}
    default_type application/json;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
"""

# A tarball of at least 5 MB that does not compress: incompressible bytes in one file.
LARGE_BYTES = 6 * 1024 * 1024


def missing() -> str:
    return "" if shutil.which("nginx") else "nginx (Debian's nginx package)"


class Nginx(Server):
    """nginx over a folder of static files; no login (the files are public)."""

    kind = "nginx"

    def __init__(self, label: str, workdir: Path, root: Path):
        super().__init__(label, workdir)
        self.www = root

    def start(self) -> float:
        work = self.workdir / self.label
        work.mkdir(parents=True, exist_ok=True)
        port = free_port()
        # As root, nginx's workers would switch to `nobody`, who may not read the run's folder.
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = work / "nginx.conf"
        conf.write_text(NGINX_CONF.format(user=user, workers=os.cpu_count() or 1, work=work, port=port,
                                          root=self.www))
        self.root = f"http://127.0.0.1:{port}"
        self.base = self.root + "/"
        self._log = open(self.log_path, "ab")
        started = time.monotonic()
        self.proc = subprocess.Popen(
            ["nginx", "-p", str(work), "-e", str(work / "nginx-error.log"), "-c", str(conf)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        self.startup_ms = self._wait_until_answering(started)
        return self.startup_ms

    def login(self) -> str:
        return ""

    def ping_url(self) -> str:
        return self.root + "/-/ping"

    def hwm(self) -> int:
        # The master does no serving; its workers do.
        return sum(proc_status(pid).get("VmHWM", 0) for pid in self.workers())

    def workers(self) -> list[int]:
        try:
            out = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        except OSError:
            return []
        return [int(x) for x in out]

    def cpu_seconds(self) -> float:
        return sum(proc_cpu_seconds(pid) for pid in [self.pid, *self.workers()])


def large_package() -> tuple[str, str, bytes]:
    """`bench-large`: one version whose tarball is over 5 MB (incompressible), so the
    large-tarball row does not depend on what the lockfile holds."""
    name, version = "bench-large", "1.0.0"
    manifest = {"name": name, "version": version, "description": "A large tarball for the benchmark.",
                "license": "MIT", "main": "index.js"}
    data = os.urandom(LARGE_BYTES)
    tgz = seed.make_tarball({"package.json": json.dumps(manifest).encode(), "data.bin": data,
                             "index.js": b"module.exports = 1;\n"})
    return name, version, seed.publish_body(name, version, manifest, tgz)


def mirror(g: Server, tarballs: dict[str, str], www: Path) -> dict:
    """Writes Gatehouse's answers into `www` for nginx: `/-/ping`, the full and the
    abbreviated packument of bench-big (each with its `.gz`), and each tarball of
    `tarballs` (key -> Gatehouse URL) under `/t/KEY.tgz`. Returns what was written."""
    auth = g.auth_headers()
    written: dict = {}

    def put(path: str, data: bytes) -> None:
        file = www / path.lstrip("/")
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(data)
        written[path] = len(data)

    status, _, body = http.request("GET", g.ping_url(), auth)
    put("/-/ping", body if status == 200 else b"{}")
    for kind, accept in (("full", "application/json"), ("abbrev", "application/vnd.npm.install-v1+json")):
        url = g.packument_url("bench-big")
        status, _, body = http.request("GET", url, {"Accept": accept, **auth})
        # The gzip nginx sends is the one Gatehouse sends (http.client does not inflate).
        status_gz, headers, gz = http.request("GET", url, {"Accept": accept, "Accept-Encoding": "gzip", **auth})
        if status != 200 or status_gz != 200 or headers.get("content-encoding") != "gzip":
            raise RuntimeError(f"{g.label} answered {status}/{status_gz} for bench-big ({kind})")
        if gzip.decompress(gz) != body:
            raise RuntimeError(f"{g.label}'s gzip of bench-big ({kind}) is not its JSON")
        put(f"/{kind}/bench-big", body)
        put(f"/{kind}/bench-big.gz", gz)
    for key, url in tarballs.items():
        status, _, body = http.request("GET", url, auth)
        if status != 200:
            raise RuntimeError(f"{g.label} answered {status} for {url}")
        put(f"/t/{key}.tgz", body)
    return written
