#!/usr/bin/env bash
# `tern bench` and `tern ping` through two real daemons on loopback (release build), against
# Pilot Protocol's published figures (0.16 MiB/s bench, 11.2 ms ping). Prints medians and
# ratios. Usage: scripts/bench-cli.sh [runs] [MiB per run]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
size=${2:-256}
cargo build --release -q -p tern
bin=$PWD/target/release/tern
dir=$(mktemp -d)
export TERN_RUNTIME_DIR=$dir/rt
trap '"$bin" --home "$dir/a" daemon stop >/dev/null 2>&1 || true; "$bin" --home "$dir/b" daemon stop >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
"$bin" --home "$dir/a" daemon start --hostname bench-a --public --listen 127.0.0.1:0 >/dev/null
"$bin" --home "$dir/b" daemon start --hostname bench-b --public --listen 127.0.0.1:0 >/dev/null
sleep 1
echo "load: $(uptime)"
for _ in $(seq "$runs"); do
    "$bin" --home "$dir/a" --json bench bench-b --size "$size"
done > "$dir/bench.json"
"$bin" --home "$dir/a" --json ping bench-b -c 200 > "$dir/ping.json"
python3 - "$dir/bench.json" "$dir/ping.json" <<'PY'
import json, statistics, sys
runs = [json.loads(l)["data"] for l in open(sys.argv[1])]
mibs = sorted(r["mib_per_s"] for r in runs)
ping = json.load(open(sys.argv[2]))["data"]
rtts = sorted(ping["rtt_ms"])
p99 = rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]
med = statistics.median(mibs)
print(f"bench: {len(runs)} runs of {runs[0]['bytes'] >> 20} MiB, path {runs[0]['path']}: "
      f"median {med:.0f} MiB/s (min {mibs[0]:.0f}, max {mibs[-1]:.0f}) = {med / 0.16:,.0f}x Pilot's 0.16 MiB/s")
print(f"ping: {len(rtts)} pings, path {ping['path']}: median {ping['median_ms']:.3f} ms, p99 {p99:.3f} ms "
      f"= {11.2 / ping['median_ms']:,.0f}x faster than Pilot's 11.2 ms")
PY
