#!/usr/bin/env bash
# Runs every test of the workspace. Installs what the tests need first, so it works on a
# fresh machine that only has a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
    echo "error: cargo not found; install Rust with rustup first (https://rustup.rs)" >&2
    exit 2
fi

# The NAT test (cli/tests/netns.rs) builds network namespaces with iproute2 and nftables,
# which needs root. As root, install them if missing; otherwise say that it is skipped.
if [ "$(id -u)" = 0 ]; then
    if ! command -v nft >/dev/null || ! command -v ip >/dev/null; then
        echo "installing iproute2 and nftables for the NAT test"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 nftables >/dev/null
    fi
else
    echo "note: not root, so the network-namespace NAT test is skipped (TERN_SKIP_NETNS=1)" >&2
    export TERN_SKIP_NETNS=1
fi

# Release-optimised dependencies keep the crypto-heavy tests fast even in the test profile
# (see [profile.dev.package."*"] in Cargo.toml).
cargo test --workspace --all-targets "$@"
# Doc tests (not covered by --all-targets).
cargo test --workspace --doc "$@"
