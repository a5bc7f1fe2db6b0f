"""The gateway's HTTP port against slow and malformed requests.

aiohttp closes idle keep-alive connections (keepalive_timeout) but has no bound on a request
that is being sent slowly: a client that drips its headers ("slowloris") or its body holds a
connection, and a task, for as long as it likes. HttpGuard closes a connection whose request
headers are not complete within `header_timeout_s` (counted from the connection's start, or
from the first byte of a later request on a kept-alive one) and answers 408 to a request whose
body is not in within `body_timeout_s`.

Public hooks only: the protocol aiohttp's server makes for each connection is wrapped by a
proxy that forwards every asyncio callback, and a middleware tells the proxy when aiohttp has
parsed a request's headers (then the handler runs: a WebSocket call may last an hour).

Client errors are the peer's fault, not ours: aiohttp's ERROR-with-traceback for a request it
cannot parse and the 4xx our handlers raise become WARNING lines, within a budget.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler, Middleware

from voxbus_common.config import GatewayService
from voxbus_common.log_limit import WarningBudget

log = logging.getLogger(__name__)

LOGGED_PER_MINUTE = 20  # client errors logged in full per kind, then a count per minute
DETAIL_CHARS = 200  # of what a peer sent, quoted in a log line


def _budget() -> WarningBudget:
    return WarningBudget(log, LOGGED_PER_MINUTE, 60.0, refill=True)


class ClientErrorLogFilter(logging.Filter):
    """On aiohttp's server logger: a request it could not parse (400: bad request line,
    header, length) is logged at ERROR with a traceback; make it a WARNING line without one,
    within a budget. Anything else (5xx, handler crashes, debug lines) passes unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.budget = _budget()

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if (record.levelno < logging.ERROR or not isinstance(exc, HttpProcessingError)
                or not 400 <= (exc.code or 0) < 500):
            return True
        if not self.budget.admit():
            return False
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        detail = " ".join(str(exc.message).split())[:DETAIL_CHARS]  # one line (a caret art)
        record.msg, record.args = "bad HTTP request refused: %s", (detail,)
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        record.status, record.peer = exc.code, str(peer)
        return True


class _Connection(asyncio.Protocol):
    """aiohttp's protocol for one connection, behind the header deadline."""

    def __init__(self, inner: asyncio.Protocol, guard: HttpGuard) -> None:
        self.inner = inner
        self.guard = guard
        self.transport: asyncio.BaseTransport | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.between_requests = False  # a request was handled: a next byte starts another

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.guard.connections[self.inner] = self
        self._arm()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.between_requests and data:
            self.between_requests = False
            self._arm()
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.guard.connections.pop(self.inner, None)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def headers_complete(self) -> None:
        self._disarm()
        self.between_requests = False

    def request_done(self) -> None:
        self.between_requests = True

    def _arm(self) -> None:
        self._disarm()
        self.deadline = asyncio.get_running_loop().call_later(self.guard.header_timeout_s,
                                                              self._expired)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _expired(self) -> None:
        self.deadline = None
        if self.transport is None or self.transport.is_closing():
            return
        self.guard.slow.warning("HTTP request headers not complete in time: connection closed",
                                extra={"peer": str(self.transport.get_extra_info("peername")),
                                       "timeout_s": self.guard.header_timeout_s})
        self.transport.close()


class HttpGuard:
    def __init__(self, header_timeout_s: float, body_timeout_s: float) -> None:
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        self.connections: dict[asyncio.BaseProtocol, _Connection] = {}
        self.slow = _budget()  # one line per closed connection, bounded
        self.refused = _budget()  # 4xx from our handlers

    @classmethod
    def from_settings(cls, settings: GatewayService) -> HttpGuard:
        return cls(settings.http_header_timeout_s, settings.http_body_timeout_s)

    def install(self, app: web.Application) -> web.Application:
        """The guard's middleware first on `app` (before runner.setup()), and aiohttp's
        bad-request lines as warnings."""
        app.middlewares.insert(0, self.middleware())
        server_log = logging.getLogger("aiohttp.server")
        if not any(isinstance(f, ClientErrorLogFilter) for f in server_log.filters):
            server_log.addFilter(ClientErrorLogFilter())
        return app

    async def listen(self, runner: web.AppRunner, host: str, port: int,
                     ssl_context: ssl.SSLContext | None = None) -> asyncio.Server:
        """Serve `runner` (set up) on host:port like web.TCPSite, every connection behind
        the header deadline. Close the returned server before runner.cleanup()."""
        server = runner.server
        if server is None:
            raise RuntimeError("call runner.setup() before listen()")
        loop = asyncio.get_running_loop()
        return await loop.create_server(
            lambda: _Connection(server(), self), host, port, ssl=ssl_context, backlog=128,
            ssl_handshake_timeout=self.header_timeout_s if ssl_context else None)

    def middleware(self) -> Middleware:
        @web.middleware
        async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            connection = self.connections.get(request.protocol)
            if connection is not None:
                connection.headers_complete()
            try:
                if request.body_exists:
                    await self._read_body(request)
                return await handler(request)
            except web.HTTPException as exc:
                if 400 <= exc.status < 500:
                    self.refused.warning("HTTP request refused", extra={
                        "status": exc.status, "method": request.method[:16],
                        "path": request.path[:DETAIL_CHARS],
                        "reason": (exc.text or exc.reason)[:DETAIL_CHARS]})
                raise
            finally:
                if connection is not None:
                    connection.request_done()

        return guard

    async def _read_body(self, request: web.Request) -> None:
        """The whole body within the bound (and client_max_size); handlers then read it
        from aiohttp's cache (read, text, post, json; not multipart, which streams)."""
        try:
            async with asyncio.timeout(self.body_timeout_s):
                await request.read()
        except TimeoutError:
            raise web.HTTPRequestTimeout(
                text=f"request body not received within {self.body_timeout_s:g} s") from None
        except (web.RequestPayloadError, ConnectionError):
            raise web.HTTPBadRequest(text="request body incomplete or malformed") from None


def runner_options(settings: GatewayService) -> dict[str, Any]:
    """web.AppRunner keyword arguments (aiohttp's RequestHandler options)."""
    return {"keepalive_timeout": settings.http_keepalive_timeout_s}
