"""The lockfile's packages, their tarballs (downloaded once into the cache), and the
npm publish bodies that put the very same bytes into both registries."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import re
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pkg:
    name: str
    version: str
    integrity: str  # sha512-... from the lockfile

    @property
    def basename(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    @property
    def file_name(self) -> str:
        return f"{self.basename}-{self.version}.tgz"

    def cache_file(self, cache: Path) -> Path:
        return cache / f"{self.name.replace('/', '+')}-{self.version}.tgz"

    def upstream_url(self, upstream: str) -> str:
        return f"{upstream.rstrip('/')}/{self.name}/-/{self.file_name}"


def lockfile_packages(lock_path: Path) -> list[Pkg]:
    """Distinct (name, version) pairs installed by a lockfile v2/v3, in a stable order."""
    lock = json.loads(lock_path.read_text())
    seen: dict[tuple[str, str], Pkg] = {}
    for path, entry in lock.get("packages", {}).items():
        if not path or entry.get("link") or "version" not in entry:
            continue
        name = entry.get("name") or path.rsplit("node_modules/", 1)[-1]
        if "integrity" not in entry:
            continue
        seen.setdefault((name, entry["version"]), Pkg(name, entry["version"], entry["integrity"]))
    return sorted(seen.values(), key=lambda p: (p.name, version_key(p.version)))


def version_key(version: str) -> tuple:
    core, _, pre = version.partition("-")
    nums = tuple(int(x) if x.isdigit() else 0 for x in re.split(r"[.+]", core)[:3])
    # A prerelease sorts before its release.
    return nums + ((0, pre) if pre else (1, ""))


def sri_sha512(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def ensure_tarballs(pkgs: list[Pkg], upstream: str, cache: Path, timeout_s: float = 600) -> list[Pkg]:
    """Downloads missing tarballs (16 parallel transfers with curl) and verifies every
    cached one against the lockfile's integrity. Returns the packages that failed."""
    cache.mkdir(parents=True, exist_ok=True)
    missing = [p for p in pkgs if not p.cache_file(cache).is_file()]
    if missing:
        cfg = cache / ".download.curlrc"
        with cfg.open("w") as f:
            for p in missing:
                part = p.cache_file(cache).with_suffix(".part")
                f.write(f'url = "{p.upstream_url(upstream)}"\noutput = "{part}"\n')
        subprocess.run(
            ["curl", "-sS", "--fail", "--retry", "2", "--max-time", "120", "-Z", "--parallel-max", "16",
             "-K", str(cfg)],
            check=False, timeout=timeout_s, stdout=subprocess.DEVNULL,
        )
        for p in missing:
            part = p.cache_file(cache).with_suffix(".part")
            if part.is_file():
                part.rename(p.cache_file(cache))
    failed = []
    for p in pkgs:
        f = p.cache_file(cache)
        if not f.is_file() or sri_sha512(f.read_bytes()) != p.integrity:
            failed.append(p)
            f.unlink(missing_ok=True)
    return failed


def packed_manifest(tgz: bytes) -> dict:
    """The package.json inside an npm tarball (its single top-level folder)."""
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        candidates = [m for m in tar.getmembers()
                      if m.isfile() and m.name.count("/") == 1 and m.name.endswith("/package.json")]
        candidates.sort(key=lambda m: m.name != "package/package.json")
        if not candidates:
            raise ValueError("no package.json in the tarball")
        f = tar.extractfile(candidates[0])
        assert f is not None
        return json.loads(f.read().decode("utf-8-sig"))


def publish_body(name: str, version: str, manifest: dict, tgz: bytes, tag: str = "latest") -> bytes:
    """The body `npm publish` sends: the version's manifest is the tarball's package.json."""
    manifest = {k: v for k, v in manifest.items() if not k.startswith("_")}
    manifest["name"] = name
    manifest["version"] = version
    manifest["_id"] = f"{name}@{version}"
    # npm names the attachment after the full (scoped) name; the URL uses the basename.
    attachment = f"{name}-{version}.tgz"
    manifest["dist"] = {
        "integrity": sri_sha512(tgz),
        "shasum": hashlib.sha1(tgz).hexdigest(),
        "tarball": f"http://localhost/{name}/-/{name.rsplit('/', 1)[-1]}-{version}.tgz",
    }
    body = {
        "_id": name,
        "name": name,
        "description": manifest.get("description", "") if isinstance(manifest.get("description"), str) else "",
        "dist-tags": {tag: version},
        "versions": {version: manifest},
        "access": None,
        "_attachments": {
            attachment: {
                "content_type": "application/octet-stream",
                "data": base64.b64encode(tgz).decode(),
                "length": len(tgz),
            }
        },
    }
    return json.dumps(body).encode()


def make_tarball(files: dict[str, bytes]) -> bytes:
    """A gzipped tar like `npm pack` makes, with fixed timestamps (reproducible bytes)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(f"package/{path}")
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 499162500  # npm's fixed 1985-10-26 timestamp
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)


def synthetic_package(name: str, version: str, heavy: bool = False) -> tuple[dict, bytes]:
    """A small real-looking package. `heavy` manifests look like a large modern library's
    (a 120-entry `exports` map, many dependencies): about 20 KB per version, so a few
    hundred versions make a packument of several MB."""
    manifest: dict = {
        "name": name,
        "version": version,
        "description": f"Synthetic package {name} for the Gatehouse benchmark.",
        "main": "index.js",
        "license": "MIT",
        "keywords": ["bench", "gatehouse", "npm", "registry"],
        "repository": {"type": "git", "url": "git+https://example.invalid/bench.git"},
    }
    if heavy:
        manifest["dependencies"] = {f"bench-dep-{i:02d}": f"^{i % 7 + 1}.{i % 5}.0" for i in range(30)}
        manifest["devDependencies"] = {f"bench-dev-dep-{i:02d}": f"~{i % 9 + 1}.0.{i % 4}" for i in range(60)}
        manifest["scripts"] = {"build": "tsc -b && rollup -c", "test": "jest --coverage", "lint": "eslint ."}
        manifest["engines"] = {"node": ">=18"}
        manifest["exports"] = {
            f"./feature-{i:03d}": {
                "types": f"./dist/types/feature-{i:03d}.d.ts",
                "import": f"./dist/esm/feature-{i:03d}.mjs",
                "require": f"./dist/cjs/feature-{i:03d}.js",
            }
            for i in range(120)
        }
    index = ("'use strict';\n" + "".join(
        f"exports.fn{i} = function fn{i}(x) {{ return x * {i} + {len(name)}; }};\n" for i in range(150))).encode()
    files = {
        "package.json": json.dumps(manifest, indent=2).encode(),
        "index.js": index,
        "README.md": f"# {name}\n\nVersion {version}.\n".encode(),
    }
    return manifest, make_tarball(files)
