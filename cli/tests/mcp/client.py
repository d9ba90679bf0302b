"""An MCP client written with the official Python SDK, for tern's end-to-end tests.

usage: client.py stdio|http legacy|modern SCRIPT TARGET...
  stdio: TARGET is the server command (e.g. `tern mcp connect alpha`, or the server itself)
  http:  TARGET is the URL

SCRIPT is one of:
  full   list tools, call every tool except crash; print one JSON object with the results
  load   call add N times (N=4) and slow once; print the results
  crash  call slow (long) and crash concurrently; print what each got
  add A B  one call of add
Results are printed as JSON (model_dump with aliases, so the wire fields show).
"""
import json
import sys

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client

try:  # 2.x
    from mcp.client.streamable_http import streamable_http_client as http_client
    from mcp.shared.exceptions import MCPError as ProtoError
except ImportError:  # 1.x
    from mcp.client.streamable_http import streamablehttp_client as http_client
    from mcp.shared.exceptions import McpError as ProtoError


def dump(x):
    return x.model_dump(mode="json", by_alias=True, exclude_none=True)


async def call(s, name, args):
    try:
        return {"result": dump(await s.call_tool(name, args))}
    except ProtoError as e:
        return {"error": {"code": e.error.code, "message": e.error.message, "data": e.error.data}}


async def run(s, script, rest):
    out = {}
    if script == "full":
        tools = (await s.list_tools()).tools
        out["tools"] = sorted([dump(t) for t in tools], key=lambda t: t["name"])
        out["add"] = await call(s, "add", {"a": 2, "b": 3})
        out["echo"] = await call(s, "echo", {"text": "héllo \"tern\"\\n ✓"})
        out["slow"] = await call(s, "slow", {"seconds": 0.3, "tag": "t"})
        out["fail"] = await call(s, "fail", {"reason": "because"})
        out["reject"] = await call(s, "reject", {"reason": "no"})
    elif script == "load":
        for i in range(4):
            out[f"add{i}"] = await call(s, "add", {"a": i, "b": 1000})
        out["slow"] = await call(s, "slow", {"seconds": 0.1, "tag": rest[0] if rest else "x"})
    elif script == "crash":
        res = {}

        async def slow():
            res["slow"] = await call(s, "slow", {"seconds": 30, "tag": "never"})

        async def crash():
            await anyio.sleep(0.5)
            res["crash"] = await call(s, "crash", {"code": 3})

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(slow)
                tg.start_soon(crash)
        out = res
    elif script == "add":
        out["add"] = await call(s, "add", {"a": int(rest[0]), "b": int(rest[1])})
    print(json.dumps(out, sort_keys=True))
    sys.stdout.flush()


async def main():
    kind, mode, script = sys.argv[1], sys.argv[2], sys.argv[3]
    target = sys.argv[4:]
    rest = []
    if script == "add":
        rest, target = target[:2], target[2:]
    elif script == "load" and target and target[0].startswith("tag="):
        rest, target = [target[0][4:]], target[1:]
    if kind == "stdio":
        cm = stdio_client(StdioServerParameters(command=target[0], args=target[1:]))
    else:
        cm = http_client(target[0])
    async with cm as (r, w, *_):
        async with ClientSession(r, w) as s:
            if mode == "modern":
                await s.discover()
            else:
                await s.initialize()
            await run(s, script, rest)


anyio.run(main)
