#!/usr/bin/env bash
# Runs every test of the workspace. Installs what the tests need first, so it works on a
# fresh machine that only has a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
    echo "error: cargo not found; install Rust with rustup first (https://rustup.rs)" >&2
    exit 2
fi

# The MCP end-to-end tests use the official Python MCP SDK (pinned, in target/mcp-venv-*).
scripts/mcp-venv.sh

# Release-optimised dependencies keep the crypto-heavy tests fast even in the test profile
# (see [profile.dev.package."*"] in Cargo.toml).
cargo test --workspace --all-targets "$@"
# Doc tests (not covered by --all-targets).
cargo test --workspace --doc "$@"
