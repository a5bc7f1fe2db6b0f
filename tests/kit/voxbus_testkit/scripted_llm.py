"""A scripted OpenAI-compatible chat server (test double) that calls tools on cue.

The embedded 135M model cannot call functions, so tests of the tool path talk the real
Chat Completions streaming protocol (SSE chunks, tool-call deltas split across chunks) to this
server instead. Rules say which word in the caller's last message makes it call which tool;
after a tool result it answers "Here is what I found: <result>". It also serves a slow
webhook (`/hooks/<name>`) and reports every request it saw (`GET /requests`).

    python -m voxbus_testkit.scripted_llm --port 0 --rules '[{"when": "ring", "tool": "stock",
        "arguments": {"item": "ring"}}]' --hook-delay 2.5   # prints "listening on PORT"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from aiohttp import web

Rule = dict[str, Any]
RULES = web.AppKey("rules", list)
HOOK_DELAY = web.AppKey("hook_delay", float)
REQUESTS = web.AppKey("requests", list)
HOOKS = web.AppKey("hooks", list)


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    doc = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 0,
           "model": "scripted", "choices": [{"index": 0, "delta": delta,
                                            "finish_reason": finish}]}
    return f"data: {json.dumps(doc)}\n\n".encode()


def decide(body: dict[str, Any], rules: list[Rule]) -> tuple[str, list[dict[str, Any]]]:
    """(text, tool calls) this "model" answers with."""
    messages = body.get("messages", [])
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        result = str(last.get("content", ""))
        try:
            doc = json.loads(result)
            result = str(doc.get("message", result)) if isinstance(doc, dict) else result
        except ValueError:
            pass
        return f"Here is what I found: {result}", []
    offered = {t["function"]["name"] for t in body.get("tools") or []}
    said = str(last.get("content", "")).lower()
    for rule in rules:
        if rule["when"] in said and rule["tool"] in offered:
            return rule.get("say", ""), [{"name": rule["tool"],
                                          "arguments": json.dumps(rule.get("arguments", {}))}]
    return "I can help with that.", []


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    request.app[REQUESTS].append(body)
    text, calls = decide(body, request.app[RULES])
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(_chunk({"role": "assistant", "content": ""}))
    for word in text.split(" ") if text else []:
        await resp.write(_chunk({"content": word + " "}))
    for i, call in enumerate(calls):
        args = call["arguments"]
        half = len(args) // 2
        await resp.write(_chunk({"tool_calls": [{"index": i, "id": f"call_{i}", "type": "function",
                                                 "function": {"name": call["name"],
                                                              "arguments": ""}}]}))
        for piece in (args[:half], args[half:]):  # arguments arrive in fragments
            await resp.write(_chunk({"tool_calls": [{"index": i,
                                                     "function": {"arguments": piece}}]}))
    await resp.write(_chunk({}, "tool_calls" if calls else "stop"))
    await resp.write(b"data: [DONE]\n\n")
    return resp


async def hook(request: web.Request) -> web.Response:
    """A slow business API: answers after `hook_delay` seconds (a real wait, not a sync)."""
    args = await request.json() if request.can_read_body else dict(request.query)
    request.app[HOOKS].append({"name": request.match_info["name"], "arguments": args,
                                 "authorization": request.headers.get("Authorization", ""),
                                 "at": time.time()})
    await asyncio.sleep(request.app[HOOK_DELAY])
    return web.json_response({"message": f"{request.match_info['name']} says yes for "
                                         f"{json.dumps(args, sort_keys=True)}."})


async def seen(request: web.Request) -> web.Response:
    return web.json_response({"requests": request.app[REQUESTS],
                              "hooks": request.app[HOOKS]})


def make_app(rules: list[Rule], hook_delay: float) -> web.Application:
    app = web.Application()
    app[RULES], app[HOOK_DELAY] = rules, hook_delay
    app[REQUESTS], app[HOOKS] = [], []
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_route("*", "/hooks/{name}", hook)
    app.router.add_get("/requests", seen)
    return app


async def serve(port: int, rules: list[Rule], hook_delay: float) -> None:
    runner = web.AppRunner(make_app(rules, hook_delay))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"listening on {bound}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rules", default="[]")
    parser.add_argument("--hook-delay", type=float, default=0.0)
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port, json.loads(args.rules), args.hook_delay))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
