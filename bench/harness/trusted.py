"""Trusted publishing, on Gatehouse alone (Verdaccio has no OIDC exchange): a CI job's
OIDC ID token exchanged for a short-lived publish token, with the issuer's keys cached.

No network: the issuer is GitHub Actions' (`https://token.actions.githubusercontent.com`)
with a static key set (`jwks_file`) made from an RSA key generated here with the
`openssl` CLI, which also signs the tokens (RS256). Standard library only."""

from __future__ import annotations

import base64
import json
import re
import statistics
import subprocess
import threading
import time
from pathlib import Path

from . import http

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
ISSUER_NAME = "bench"
KID = "bench-rsa-1"
PACKAGE = "bench-tp"
REPOSITORY = "acme/bench-tp"
WORKFLOW = "release.yml"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def openssl(*args: str, stdin: bytes | None = None) -> bytes:
    r = subprocess.run(["openssl", *args], input=stdin, capture_output=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {r.stderr.decode(errors='replace').strip()[:300]}")
    return r.stdout


class Signer:
    """An RSA key (2048 bits, as GitHub's), its JWKS, and RS256 JWTs signed with it."""

    def __init__(self, workdir: Path):
        workdir.mkdir(parents=True, exist_ok=True)
        self.key = workdir / "oidc-rsa.pem"
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(self.key))
        text = openssl("rsa", "-in", str(self.key), "-noout", "-text").decode()
        modulus = openssl("rsa", "-in", str(self.key), "-noout", "-modulus").decode().strip()
        n_hex = modulus.split("=", 1)[1]
        m = re.search(r"publicExponent:\s*(\d+)", text)
        if not m:
            raise RuntimeError("openssl rsa -text printed no publicExponent")
        e = int(m.group(1))
        n = bytes.fromhex(n_hex if len(n_hex) % 2 == 0 else "0" + n_hex)
        self.jwks = {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": KID,
                               "n": b64url(n.lstrip(b"\0")),
                               "e": b64url(e.to_bytes((e.bit_length() + 7) // 8, "big"))}]}
        self.jwks_file = workdir / "oidc-jwks.json"
        self.jwks_file.write_text(json.dumps(self.jwks, indent=2) + "\n")

    def jwt(self, claims: dict) -> str:
        header = {"alg": "RS256", "typ": "JWT", "kid": KID}
        signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                         + b64url(json.dumps(claims, separators=(",", ":")).encode()))
        signature = openssl("dgst", "-sha256", "-sign", str(self.key), stdin=signing_input.encode())
        return signing_input + "." + b64url(signature)


def github_claims(audience: str, lifetime_s: int = 300) -> dict:
    """What GitHub Actions puts in a job's ID token (the claims of
    tests/it/support/oidc.rs `github_claims`, plus the others a real one carries)."""
    now = int(time.time())
    ref = "refs/heads/main"
    return {
        "iss": GITHUB_ISSUER, "aud": audience, "iat": now, "nbf": now - 5, "exp": now + lifetime_s,
        "jti": f"bench-{now}", "sub": f"repo:{REPOSITORY}:ref:{ref}",
        "repository": REPOSITORY, "repository_owner": REPOSITORY.split("/")[0],
        "repository_id": "123456789", "repository_owner_id": "987654",
        "repository_visibility": "private", "actor": "bench-bot", "actor_id": "555",
        "workflow": "release", "workflow_ref": f"{REPOSITORY}/.github/workflows/{WORKFLOW}@{ref}",
        "workflow_sha": "5f1c2a9e0d4b7c3a", "job_workflow_ref": f"{REPOSITORY}/.github/workflows/{WORKFLOW}@{ref}",
        "job_workflow_sha": "5f1c2a9e0d4b7c3a", "ref": ref, "ref_type": "branch", "ref_protected": "true",
        "sha": "5f1c2a9e0d4b7c3a", "run_id": "4242", "run_number": "7", "run_attempt": "1",
        "event_name": "push", "runner_environment": "github-hosted",
    }


def config_toml(jwks_file: Path, base: str = "") -> str:
    return (base + '[oidc]\ntoken_ttl = "15m"\n'
            f'[oidc.issuers.{ISSUER_NAME}]\nkind = "github"\nissuer = "{GITHUB_ISSUER}"\n'
            f'jwks_file = "{jwks_file}"\n')


def exchange_url(root: str, registry: str | None = None, name: str = PACKAGE) -> str:
    base = f"{root}/r/{registry}/" if registry else f"{root}/"
    return f"{base}-/npm/v1/oidc/token/exchange/package/{name.replace('/', '%2f')}"


def check_answer(status: int, body: bytes) -> str | None:
    """The exchanged token, or None when the answer is not `201 {"token": …}`."""
    if status != 201:
        return None
    try:
        token = json.loads(body).get("token")
    except (ValueError, AttributeError):
        return None
    return token if isinstance(token, str) and token else None


def exchanges(url: str, jwt: str, n: int, workers: int, deadline: float) -> dict:
    """`n` exchanges of `jwt` at `url`, split over `workers` keep-alive connections, each
    one after another on its own; every answer's latency, and what was not 201 + token."""
    headers = {"Authorization": f"Bearer {jwt}", "Accept": "application/json"}
    latencies: list[float] = []
    errors: list[str] = []
    tokens: set[str] = set()
    lock = threading.Lock()
    share = [n // workers + (1 if i < n % workers else 0) for i in range(workers)]
    skipped = ok = connects = 0

    def run(count: int) -> None:
        nonlocal skipped, ok, connects
        client = http.Client(url, timeout=60)
        mine: list[float] = []
        try:
            for _ in range(count):
                if time.monotonic() > deadline:
                    with lock:
                        skipped += 1
                    continue
                t0 = time.perf_counter()
                try:
                    status, body = client.request("POST", url, headers, b"")
                except OSError as e:
                    with lock:
                        errors.append(f"{type(e).__name__}: {e}")
                    continue
                mine.append(time.perf_counter() - t0)
                token = check_answer(status, body)
                with lock:
                    if token is None:
                        errors.append(f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}")
                    else:
                        ok += 1
                        tokens.add(token)
        finally:
            client.close()
            with lock:
                latencies.extend(mine)
                connects += client.connects

    threads = [threading.Thread(target=run, args=(c,), daemon=True) for c in share]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    return {"attempted": n - skipped, "ok": ok, "skipped_for_time": skipped, "workers": workers,
            "connections": connects, "seconds": elapsed, "per_second": ok / elapsed if elapsed and ok else None,
            "distinct_tokens": len(tokens), "errors": errors,
            "lat_p50_ms": percentile(latencies, 50), "lat_p99_ms": percentile(latencies, 99),
            "lat_mean_ms": statistics.fmean(latencies) * 1000 if latencies else None,
            "lat_max_ms": max(latencies) * 1000 if latencies else None}


def percentile(xs: list[float], p: float) -> float | None:
    """The nearest-rank percentile of seconds, in ms."""
    if not xs:
        return None
    s = sorted(xs)
    rank = max(1, min(len(s), int(-(-p * len(s) // 100))))
    return s[rank - 1] * 1000


def key_reads(log: Path) -> int:
    """How often the server read the issuer's keys (its "fetched OIDC keys" log line)."""
    try:
        return log.read_text(errors="replace").count("fetched OIDC keys")
    except OSError:
        return -1
