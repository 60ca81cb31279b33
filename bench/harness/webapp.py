"""W8: the web app's heaviest pages on a Gatehouse of its own: a registry holding many
packages (its page and a search), and the page of a package with many versions.
Seeded over the npm protocol (publishes in parallel); timed as a signed-in browser
asks, one request after another on one keep-alive connection, on 127.0.0.1 (so the
time is the server's, plus a loopback round trip)."""

from __future__ import annotations

import concurrent.futures
import json
import statistics
import time
import urllib.parse

from . import http, seed
from .servers import ADMIN_PASSWORD, ADMIN_USER, Gatehouse

MANY = "bench-many-versions"


def _publish(g: Gatehouse, name: str, version: str) -> str | None:
    manifest, tgz = seed.synthetic_package(name, version)
    body = seed.publish_body(name, version, manifest, tgz)
    headers = {**g.auth_headers(), "Content-Type": "application/json"}
    status, _, data = http.request("PUT", g.base + urllib.parse.quote(name, safe="@"), headers, body)
    return None if status in (200, 201) else f"{name}@{version}: HTTP {status}: {data[:160]!r}"


def seed_registry(g: Gatehouse, packages: int, versions: int, workers: int, deadline: float) -> dict:
    """`packages` packages of one version, and `MANY` with `versions` versions (one after
    another: each is a new version of the same document)."""
    started = time.monotonic()
    errors: list[str] = []
    names = [f"bench-pkg-{i:05d}" for i in range(packages)]
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for error in pool.map(lambda n: _publish(g, n, "1.0.0") if time.monotonic() < deadline else "time budget",
                              names):
            if error:
                errors.append(error)
    for v in range(versions):
        if time.monotonic() >= deadline:
            errors.append("time budget")
            break
        error = _publish(g, MANY, f"1.{v // 100}.{v % 100}")
        if error:
            errors.append(error)
    return {"packages": packages, "versions": versions, "seconds": time.monotonic() - started,
            "errors": len(errors), "first_errors": errors[:5]}


def sign_in(g: Gatehouse) -> str:
    """The session cookie of the administrator, as the sign-in form sets it."""
    form = urllib.parse.urlencode({"username": ADMIN_USER, "password": ADMIN_PASSWORD, "next": "/-/ui/"}).encode()
    status, headers, data = http.request("POST", g.root + "/-/ui/login",
                                         {"Content-Type": "application/x-www-form-urlencoded"}, form)
    cookie = headers.get("set-cookie", "").split(";", 1)[0]
    if status != 303 or not cookie:
        raise RuntimeError(f"sign-in: HTTP {status}: {data[:200]!r}")
    return cookie


def time_page(g: Gatehouse, cookie: str, path: str, n: int, must_contain: str) -> dict:
    """`n` GETs of a page one after another: latency p50/p99 (ms), every answer a 200
    carrying `must_contain`."""
    client = http.Client(g.root)
    times: list[float] = []
    bad = 0
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            status, body = client.request("GET", g.root + path, {"Cookie": cookie})
            times.append((time.perf_counter() - t0) * 1000)
            if status != 200 or must_contain.encode() not in body:
                bad += 1
    finally:
        client.close()
    times.sort()
    return {"path": path, "n": n, "bad": bad, "p50_ms": statistics.median(times),
            "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))], "bytes": len(body) if n else 0}


def measure(g: Gatehouse, packages: int, versions: int, n: int) -> dict:
    cookie = sign_in(g)
    pages = {
        "registry": ("/-/ui/r/default", f"{packages + 1} package(s)"),
        "search": ("/-/ui/r/default?q=" + urllib.parse.quote(f"bench-pkg-{packages // 2:05d}"), "bench-pkg-"),
        "package": (f"/-/ui/r/default/p/{MANY}", MANY),
    }
    # One warm-up each: the first read builds the prepared document.
    for path, needle in pages.values():
        time_page(g, cookie, path, 1, needle)
    return {key: time_page(g, cookie, path, n, needle) for key, (path, needle) in pages.items()}


def dumps(raw: dict) -> str:
    return json.dumps(raw, indent=2)
