"""A real MCP server written with the official Python SDK (mcp 1.x or 2.x), for tern's
end-to-end tests. stdio by default; `http PORT` serves streamable HTTP on /mcp.

Tools: add, echo, slow (sleeps), fail (the tool raises: an isError result), reject (a
JSON-RPC error), crash (the process dies mid-call), tide (found by `tern mcp find harbour`).
"""
import os
import sys
import time

try:  # mcp 2.x
    from mcp.server.mcpserver import MCPServer as App
    from mcp.shared.exceptions import MCPError

    def protocol_error(code, message):
        return MCPError(code, message, {"why": "asked to"})
except ImportError:  # mcp 1.x
    from mcp.server.fastmcp import FastMCP as App
    from mcp.shared.exceptions import McpError
    from mcp.types import ErrorData

    def protocol_error(code, message):
        return McpError(ErrorData(code=code, message=message, data={"why": "asked to"}))

app = App("tern-test")


@app.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@app.tool()
def echo(text: str) -> str:
    """Echo text back unchanged."""
    return text


@app.tool()
def slow(seconds: float, tag: str) -> str:
    """Sleep for a while, then answer with the tag."""
    time.sleep(seconds)
    return f"slept {seconds}s for {tag}"


@app.tool()
def fail(reason: str) -> str:
    """Always fails with the given reason."""
    raise ValueError(f"failed on purpose: {reason}")


@app.tool()
def reject(reason: str) -> str:
    """Answers with a JSON-RPC error."""
    raise protocol_error(-32042, f"rejected: {reason}")


@app.tool()
def crash(code: int) -> str:
    """Kills the server process mid-call."""
    sys.stdout.flush()
    os._exit(code)


@app.tool()
def tide(port_name: str) -> str:
    """Predicts tide heights for a harbour. Made-up numbers."""
    return f"{port_name}: high water 4.2 m at 06:12"


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        port = int(sys.argv[2])
        try:
            app.run("streamable-http", host="127.0.0.1", port=port)  # 2.x
        except TypeError:
            app.settings.host, app.settings.port = "127.0.0.1", port  # 1.x
            app.run("streamable-http")
    else:
        app.run()
