"""The workloads. Each is bounded in request count and in time, and sends requests only
to 127.0.0.1 (except `npm ci` against the upstream, the reference run)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from . import http, seed
from .servers import Server

ABBREVIATED_ACCEPT = "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*"
FULL_ACCEPT = "application/json"
BENCH_DIR = Path(__file__).resolve().parent.parent


# --- seeding -------------------------------------------------------------------------------
def publish_groups(server: Server, groups: list[list[tuple[str, str, bytes]]], workers: int,
                   deadline: float) -> dict:
    """Publishes (name, version, body) lists; each list in order on one worker (versions
    of one package one after another, as a release would), lists in parallel."""
    errors: list[str] = []
    skipped: list[str] = []
    lock = threading.Lock()
    count = 0

    def run(group: list[tuple[str, str, bytes]]) -> None:
        nonlocal count
        client = http.Client(server.root)
        headers = {"Content-Type": "application/json", **server.auth_headers()}
        try:
            for name, version, body in group:
                if time.monotonic() > deadline:
                    with lock:
                        skipped.append(f"{name}@{version}")
                    continue
                status, data = client.request("PUT", server.packument_url(name), headers, body)
                with lock:
                    count += 1
                    if status not in (200, 201):
                        errors.append(f"{name}@{version}: HTTP {status} {error_text(data)}")
        finally:
            client.close()

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(run, groups))
    elapsed = time.monotonic() - started
    ok = count - len(errors)
    return {"published": ok, "attempted": count, "skipped_for_time": len(skipped), "seconds": elapsed,
            "per_second": ok / elapsed if elapsed and ok else None, "errors": errors}


def error_text(body: bytes) -> str:
    """The `error` of a registry's JSON error body, else the body's start."""
    try:
        doc = json.loads(body)
        if isinstance(doc, dict) and isinstance(doc.get("error"), str):
            return doc["error"][:200]
    except ValueError:
        pass
    return body[:200].decode("utf-8", "replace")


def seed_bodies(pkgs: list[seed.Pkg], cache: Path) -> tuple[list[list[tuple[str, str, bytes]]], list[str]]:
    groups: dict[str, list[tuple[str, str, bytes]]] = {}
    problems = []
    for p in pkgs:
        tgz = p.cache_file(cache).read_bytes()
        try:
            manifest = seed.packed_manifest(tgz)
        except (ValueError, OSError, json.JSONDecodeError) as e:
            problems.append(f"{p.name}@{p.version}: {e}")
            continue
        groups.setdefault(p.name, []).append((p.name, p.version, seed.publish_body(p.name, p.version, manifest, tgz)))
    return list(groups.values()), problems


# --- workload 1: npm ci --------------------------------------------------------------------------
def npm_ci(registry: str, token: str, work: Path, timeout_s: float) -> dict:
    """`npm ci --ignore-scripts` of bench/app with a fresh client cache and node_modules."""
    app = work / "app"
    cache = work / "npm-cache"
    for d in (app, cache):
        shutil.rmtree(d, ignore_errors=True)
    app.mkdir(parents=True)
    for f in ("package.json", "package-lock.json"):
        shutil.copy(BENCH_DIR / "app" / f, app / f)
    npmrc = work / "npmrc"
    lines = [f"registry={registry}", "audit=false", "fund=false", "update-notifier=false", "progress=false"]
    if token:
        nerf = "//" + registry.split("://", 1)[1]
        lines.append(f"{nerf}:_authToken={token}")
    npmrc.write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith("npm_config_")}
    cmd = ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error",
           f"--userconfig={npmrc}", f"--cache={cache}", f"--registry={registry}"]
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=app, env=env, capture_output=True, text=True, timeout=timeout_s)
        elapsed = time.monotonic() - started
        ok = proc.returncode == 0
        out = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired:
        elapsed, ok, out = time.monotonic() - started, False, f"timed out after {timeout_s:.0f}s"
    added = re.search(r"added (\d+) packages", out)
    result = {"seconds": elapsed, "ok": ok, "added": int(added.group(1)) if added else None}
    if not ok:
        # The first `npm error` line that names the cause (e.g. "404 Not Found - GET ..."), else the tail.
        causes = [ln for ln in out.splitlines() if re.search(r"npm error (code|\d{3} )", ln)]
        result["error"] = (" / ".join(causes[:2]) or out.strip()[-300:]).replace("npm error ", "")
    shutil.rmtree(app, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    return result


# --- workload 2: CI fleet ----------------------------------------------------------------------------
def fleet_urls(server: Server, pkgs: list[seed.Pkg]) -> tuple[dict[str, tuple[str, dict[str, str]]], list[str]]:
    """For each package the registry holds: its packument URL and the tarball URL it
    advertises for each of the lockfile's versions. Returns ({name: (url, {version:
    tarball})}, problems)."""
    found: dict[str, tuple[str, dict[str, str]]] = {}
    problems: list[str] = []
    by_name: dict[str, list[seed.Pkg]] = {}
    for p in pkgs:
        by_name.setdefault(p.name, []).append(p)
    client = http.Client(server.root)
    headers = {"Accept": ABBREVIATED_ACCEPT, **server.auth_headers()}
    for name, versions in by_name.items():
        url = server.packument_url(name)
        status, data = client.request("GET", url, headers)
        if status != 200:
            problems.append(f"{name}: HTTP {status}")
            continue
        doc = json.loads(data)
        tarballs = {}
        for p in versions:
            tarball = doc.get("versions", {}).get(p.version, {}).get("dist", {}).get("tarball")
            if not tarball:
                problems.append(f"{name}@{p.version}: not in the packument")
            elif urlsplit(tarball).hostname != "127.0.0.1":
                problems.append(f"{name}@{p.version}: tarball URL not on 127.0.0.1: {tarball}")
            else:
                tarballs[p.version] = tarball
        found[name] = (url, tarballs)
    client.close()
    return found, problems


def common_urls(found: list[dict[str, tuple[str, dict[str, str]]]]) -> tuple[list[list[str]], list[tuple[str, str]]]:
    """Per registry, the request list (packument, then its tarballs) restricted to the
    packages and versions every registry holds, so each serves the same work; and
    those (name, version) pairs."""
    names = set.intersection(*(set(f) for f in found)) if found else set()
    out: list[list[str]] = [[] for _ in found]
    pairs: list[tuple[str, str]] = []
    for name in sorted(names):
        versions = sorted(set.intersection(*(set(f[name][1]) for f in found)), key=seed.version_key)
        pairs.extend((name, v) for v in versions)
        for i, f in enumerate(found):
            url, tarballs = f[name]
            out[i].append(url)
            out[i].extend(tarballs[v] for v in versions)
    return out, pairs


def wrk_fleet(server: Server, urls: list[str], workers: int, work: Path, timeout_s: float) -> dict:
    """One pass: every URL once (abbreviated packuments with gzip accepted, as npm asks,
    and tarballs), over `workers` keep-alive connections. wrk (C, with bench/wrk/fleet.lua)
    is the client so that it is not the bottleneck. wrk's main thread only ends at its
    duration or on SIGINT, so each wrk thread reports when its share is answered and the
    last report gets SIGINT sent: wrk's own clock then covers the pass."""
    listing = work / f"fleet-{server.label}.txt"
    paths = []
    for url in urls:
        parts = urlsplit(url)
        paths.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    listing.write_text("\n".join(paths) + "\n")
    threads = max(1, min(os.cpu_count() or 1, workers, 4))
    cmd = ["wrk", f"-t{threads}", f"-c{workers}", f"-d{int(timeout_s)}s", "--timeout", "30s",
           "-s", str(BENCH_DIR / "wrk" / "fleet.lua"),
           "-H", f"Authorization: Bearer {server.token}", "-H", f"Accept: {ABBREVIATED_ACCEPT}",
           "-H", "Accept-Encoding: gzip", server.root, "--", str(listing), str(threads), "1"]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    finished = 0
    summary = None
    try:
        for line in proc.stdout:
            if line.startswith("FLEETDONE"):
                finished += 1
                if finished == threads:
                    proc.send_signal(signal.SIGINT)
            elif line.startswith("FLEETJSON "):
                summary = json.loads(line[len("FLEETJSON "):])
        proc.wait(timeout=max(1.0, timeout_s + 60 - (time.monotonic() - started)))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if summary is None:
        raise RuntimeError(f"wrk printed no fleet summary: {proc.stderr.read()[-500:] if proc.stderr else ''}")
    r = summary
    r["seconds"] = r["duration_us"] / 1e6
    r["requests"] = r["responses"]
    r["complete"] = finished == threads
    r["ok"] = r["complete"] and r["ok"] == len(urls) and r["responses"] == len(urls)
    return r


# --- workload 3: wrk ----------------------------------------------------------------------------------------
def wrk(url: str, headers: dict[str, str], connections: int, threads: int, seconds: float) -> dict:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
           "-s", str(BENCH_DIR / "wrk" / "report.lua")]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    cmd.append(url)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("WRKJSON "):
            r = json.loads(line[len("WRKJSON "):])
            secs = r["duration_us"] / 1e6
            r["rps"] = r["requests"] / secs if secs else 0.0
            r["mb_per_s"] = r["bytes"] / secs / 1e6 if secs else 0.0
            r["errors"] = r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["status_errors"] + r["timeouts"]
            return r
    raise RuntimeError(f"wrk printed no summary: {proc.stdout[-500:]} {proc.stderr[-500:]}")


# --- workload 4: publish -------------------------------------------------------------------------------------
def publish_throughput(server: Server, prefix: str, count: int, workers: int, deadline: float) -> dict:
    """`count` publishes of new versions: with workers == 1, versions of one package in a
    row; otherwise `workers` clients in parallel, each releasing its own package."""
    bodies: list[list[tuple[str, str, bytes]]] = [[] for _ in range(workers)]
    for i in range(count):
        w = i % workers
        name = f"{prefix}-{w}" if workers > 1 else prefix
        version = f"1.0.{i // workers}"
        manifest, tgz = seed.synthetic_package(name, version)
        bodies[w].append((name, version, seed.publish_body(name, version, manifest, tgz)))
    return publish_groups(server, bodies, workers, deadline)
