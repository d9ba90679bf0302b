"""A small stdio MCP server with no dependencies (Python standard library only), for the
load and crash tests, where 50 SDK servers would cost more CPU than the test is worth.
Speaks the initialize-based era. Tools: add(a, b), slow(seconds, tag), crash(code).
Any extra arguments are ignored (tests pass a marker to find leftover processes).
"""
import json
import os
import sys
import threading
import time

lock = threading.Lock()


def send(msg):
    data = json.dumps(msg) + "\n"
    with lock:
        sys.stdout.write(data)
        sys.stdout.flush()


def text(id_, s, err=False):
    send({"jsonrpc": "2.0", "id": id_, "result": {"content": [{"type": "text", "text": s}], "isError": err}})


def call(id_, name, args):
    if name == "add":
        text(id_, str(int(args["a"]) + int(args["b"])))
    elif name == "slow":
        time.sleep(float(args["seconds"]))
        text(id_, "slept for " + str(args["tag"]))
    elif name == "crash":
        os._exit(int(args.get("code", 3)))
    else:
        send({"jsonrpc": "2.0", "id": id_, "error": {"code": -32602, "message": "unknown tool " + name}})


TOOLS = [
    {"name": "add", "description": "Add two integers.", "inputSchema": {"type": "object"}},
    {"name": "slow", "description": "Sleep, then answer.", "inputSchema": {"type": "object"}},
    {"name": "crash", "description": "Kill the server process.", "inputSchema": {"type": "object"}},
]

for line in sys.stdin:
    msg = json.loads(line)
    id_, method = msg.get("id"), msg.get("method")
    if id_ is None:
        continue
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": id_, "result": {
            "protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
            "serverInfo": {"name": "raw", "version": "1"}}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": id_, "result": {"tools": TOOLS}})
    elif method == "tools/call":
        p = msg["params"]
        threading.Thread(target=call, args=(id_, p["name"], p.get("arguments", {})), daemon=True).start()
    else:
        send({"jsonrpc": "2.0", "id": id_, "error": {"code": -32601, "message": "method not found"}})
