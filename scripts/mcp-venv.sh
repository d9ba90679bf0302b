#!/usr/bin/env bash
# Installs the official Python MCP SDK, pinned, into two virtual environments used by the
# MCP end-to-end tests (cli/tests/mcp_*.rs) and the MCP overhead benchmark:
#   target/mcp-venv-2  mcp 2.x (speaks both protocol eras: 2026-07-28 and 2025-11-25)
#   target/mcp-venv-1  mcp 1.x (the older, initialize-based era only)
# Idempotent: a venv that already has the pinned version is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

MCP2_VERSION="2.3.0"
MCP1_VERSION="1.30.0"

if ! python3 -c 'import venv, ensurepip' 2>/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing python3-venv for the MCP SDK tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    echo "error: python3 with venv/ensurepip is needed (Debian: apt-get install python3-venv)" >&2
    exit 2
fi

make_venv() {
    local dir="$1" version="$2"
    if [ -x "$dir/bin/python" ] && [ "$("$dir/bin/python" -c 'import importlib.metadata as m; print(m.version("mcp"))' 2>/dev/null)" = "$version" ]; then
        echo "$dir: mcp $version already installed"
        return
    fi
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check "mcp==$version"
    echo "$dir: mcp $("$dir/bin/python" -c 'import importlib.metadata as m; print(m.version("mcp"))') installed"
}

mkdir -p target
make_venv target/mcp-venv-2 "$MCP2_VERSION"
make_venv target/mcp-venv-1 "$MCP1_VERSION"
