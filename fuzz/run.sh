#!/usr/bin/env bash
# Builds every fuzz target once and runs each briefly from its seed corpus
# (fuzz/corpus/TARGET), so the targets never rot: .ci/run calls it. A failure prints
# the target's log and leaves the input in fuzz/artifacts/TARGET/.
#
#   fuzz/run.sh [SECONDS]    total fuzzing time, split over the targets (default 60)
#
# New inputs go to a scratch folder, not the committed seeds. Hours-long runs of one
# target: README.md, "Fuzzing".
set -euo pipefail
cd "$(dirname "$0")"
total=${1:-60}

cargo +nightly fuzz build
host=$(rustc +nightly -vV | sed -n 's/^host: //p')
bin=target/$host/release
targets=$(cargo +nightly fuzz list)
count=$(wc -w <<<"$targets")
each=$((total / count > 0 ? total / count : 1))

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for target in $targets; do
    mkdir -p "$scratch/$target" "artifacts/$target"
    # -timeout: seconds for one small input is a bug (a slow path an attacker can
    # pick); 20 leaves room for a machine busy with other builds.
    if ! "$bin/$target" "$scratch/$target" "corpus/$target" \
        -max_total_time="$each" -timeout=20 -rss_limit_mb=2048 \
        -artifact_prefix="artifacts/$target/" >"$scratch/$target.log" 2>&1; then
        tail -n 60 "$scratch/$target.log"
        echo "fuzz: $target failed; the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    runs=$(grep -Eo '^#[0-9]+' "$scratch/$target.log" | tail -n 1)
    echo "fuzz: $target: ${runs#\#} runs in ${each}s, no failure"
done
