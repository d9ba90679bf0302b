#!/usr/bin/env bash
# MCP overhead benchmark: the round-trip time of one tools/call through tern
# (MCP client → tern mcp connect → daemon → encrypted stream over loopback UDP → daemon →
# tern mcp expose → server process) against the same call over direct stdio, one call at
# a time, 1,000 timed calls after 100 warm-up calls. Prints median and p99 for both and
# the difference (what tern adds).
#
#   scripts/bench-mcp.sh [CALLS]
#
# The server is tern's built-in sample server (Rust, answers in microseconds, so the
# difference is tern's). With target/mcp-venv-2 present (scripts/mcp-venv.sh), the
# official Python SDK server is measured too.
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS="${1:-1000}"
cargo build --release -q -p tern
T="$PWD/target/release/tern"
W="$(mktemp -d /tmp/tern-bench-mcp.XXXXXX)"
export TERN_RUNTIME_DIR="$W/runtime"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for h in alpha bravo; do "$T" --home "$W/$h" daemon stop >/dev/null 2>&1 || true; done
    sleep 0.5
    rm -rf "$W"
}
trap cleanup EXIT

"$T" --home "$W/rdv" --json rendezvous --listen 127.0.0.1:0 > "$W/rdv.json" 2>/dev/null &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$W/rdv.json" ] && break; sleep 0.05; done
RDV="$(sed -e 's/.*"rendezvous":"\([^"]*\)".*/\1/' "$W/rdv.json")"
"$T" --home "$W/alpha" daemon start --hostname alpha --public --rendezvous "$RDV" --listen 127.0.0.1:0 >/dev/null
"$T" --home "$W/bravo" daemon start --hostname bravo --public --rendezvous "$RDV" --listen 127.0.0.1:0 >/dev/null

expose() { # port, server command...
    local port="$1"; shift
    "$T" --home "$W/alpha" mcp expose --port "$port" -- "$@" > "$W/expose-$port.out" 2> "$W/expose-$port.err" &
    PIDS+=($!)
    for _ in $(seq 400); do [ -s "$W/expose-$port.out" ] && return; sleep 0.05; done
    echo "expose did not start:"; cat "$W/expose-$port.err"; exit 1
}

measure() { # label, port, server command...
    local label="$1" port="$2"; shift 2
    expose "$port" "$@"
    local direct through
    direct="$("$T" --json mcp bench-call --calls "$CALLS" -- "$@")"
    through="$("$T" --home "$W/bravo" --json mcp bench-call --calls "$CALLS" -- "$T" --home "$W/bravo" mcp connect alpha --port "$port")"
    python3 - "$label" "$direct" "$through" <<'PY'
import json, sys
label, d, t = sys.argv[1], json.loads(sys.argv[2])["data"], json.loads(sys.argv[3])["data"]
print(f"{label}: {d['calls']} calls each")
print(f"  direct stdio   median {d['median_us']:8.1f} µs   p99 {d['p99_us']:8.1f} µs")
print(f"  through tern   median {t['median_us']:8.1f} µs   p99 {t['p99_us']:8.1f} µs")
print(f"  tern adds      median {t['median_us']-d['median_us']:8.1f} µs   p99 {t['p99_us']-d['p99_us']:8.1f} µs")
PY
}

measure "built-in sample server (Rust)" 1000 "$T" mcp sample-server
if [ -x target/mcp-venv-2/bin/python ]; then
    measure "Python SDK 2.x server (cli/tests/mcp/server.py)" 1002 \
        "$PWD/target/mcp-venv-2/bin/python" "$PWD/cli/tests/mcp/server.py"
fi
