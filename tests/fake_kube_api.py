"""A fake Kubernetes API server for `voxbus deploy status` tests: answers the four list calls
from JSON fixtures (filtering by labelSelector like the real one), checks the bearer token and
records every request, on a free port in a background thread."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "k8s"
LISTS = {"/apis/apps/v1/namespaces/{ns}/deployments": "deployments.json",
         "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers":
             "horizontalpodautoscalers.json",
         "/apis/keda.sh/v1alpha1/namespaces/{ns}/scaledobjects": "scaledobjects.json",
         "/api/v1/namespaces/{ns}/pods": "pods.json"}


@dataclass(frozen=True)
class Seen:
    path: str
    label_selector: str | None
    authorization: str | None


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                              "status": "Failure", "message": message, "reason": reason,
                              "code": code}, status=code)


def select(items: list[dict[str, Any]], selector: str | None) -> list[dict[str, Any]]:
    """Equality-based label selection (`k=v,k2=v2`), all the CLI sends."""
    wanted = dict(term.split("=", 1) for term in (selector or "").split(",") if term)
    return [i for i in items
            if all((i["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())]


@dataclass
class FakeKubeAPI:
    namespace: str
    token: str
    forbidden: set[str] = field(default_factory=set)  # fixture files answered with a 403
    seen: list[Seen] = field(default_factory=list)
    url: str = ""
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.seen.append(Seen(request.path, request.query.get("labelSelector"),
                              request.headers.get("Authorization")))
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _status(401, "Unauthorized", "Unauthorized")
        routes = {path.format(ns=self.namespace): name for path, name in LISTS.items()}
        name = routes.get(request.path)
        if name is None:
            return _status(404, "NotFound", "the server could not find the requested resource")
        if name in self.forbidden:
            return web.json_response(json.loads((FIXTURES / "forbidden.json").read_text()),
                                     status=403)
        doc = json.loads((FIXTURES / name).read_text())
        doc["items"] = select(doc["items"], request.query.get("labelSelector"))
        return web.json_response(doc)

    async def _start(self, sock: socket.socket) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    def __enter__(self) -> FakeKubeAPI:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))  # the kernel's free port, held from here on: no race
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(sock), self._loop).result(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._loop.close()

    def kubeconfig(self, path: Path, *, server: str | None = None) -> Path:
        """A kubeconfig (JSON is YAML) whose current context reads namespace `voice` with
        this server's token."""
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": server or self.url}}],
            "users": [{"name": "status-reader", "user": {"token": self.token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake",
                                                      "user": "status-reader",
                                                      "namespace": self.namespace}}]}))
        return path
