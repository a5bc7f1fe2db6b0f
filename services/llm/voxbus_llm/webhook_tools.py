"""A webhook tool: the model's arguments are POSTed (or sent as a GET query) to a URL from
the agent file; the answer's body, trimmed, is what the model reads."""

from __future__ import annotations

import logging
import os
from typing import Any

import aiohttp

from voxbus_common.agent import Webhook
from voxbus_llm.tool_args import MAX_RESULT_CHARS

log = logging.getLogger(__name__)



class WebhookTool:
    def __init__(self, hook: Webhook, http: HttpSession) -> None:
        self.hook = hook
        self.name = hook.name
        self.read_only = hook.read_only
        self.timeout_s = hook.timeout_s
        self._http = http

    def definition(self) -> dict[str, Any]:
        return {"type": "function", "function": {
            "name": self.name, "description": self.hook.description,
            "parameters": self.hook.parameters}}

    async def __call__(self, args: dict[str, Any]) -> tuple[str, str]:
        hook = self.hook
        headers = {"User-Agent": "voxbus-tool/1"}
        if hook.auth_header_env:
            secret = os.environ.get(hook.auth_header_env, "")
            if secret:
                headers["Authorization"] = f"{hook.auth_scheme} {secret}".strip()
        session = self._http.get()
        timeout = aiohttp.ClientTimeout(total=hook.timeout_s)
        try:
            if hook.method == "GET":
                request = session.get(hook.url, params={k: str(v) for k, v in args.items()},
                                      headers=headers, timeout=timeout)
            else:
                request = session.post(hook.url, json=args, headers=headers, timeout=timeout)
            async with request as resp:
                body = (await resp.text(errors="replace"))[:MAX_RESULT_CHARS]
                if resp.status >= 400:
                    log.warning("tool %s answered HTTP %d", hook.name, resp.status)
                    detail = f": {body[:200]}" if resp.status == 400 and body else ""
                    return (f"error: the {hook.name} service answered HTTP {resp.status}"
                            f"{detail}"), "http_error"
                return body or "(empty result)", "ok"
        except aiohttp.ClientError as exc:
            log.warning("tool %s failed: %s", hook.name, exc)
            return f"error: {hook.name} could not be reached", "unreachable"


class HttpSession:
    """One aiohttp session for all webhooks, made on first use (inside the event loop)."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
