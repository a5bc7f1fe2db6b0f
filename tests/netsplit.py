"""A TCP proxy between one service and nats-server that can partition them, for tests.

`stall()` is a partition as TCP sees it: packets stop, connections stay open, and what was
sent arrives once the network heals (`heal()`), unless a side gave up meanwhile. `cut()` is
a partition that resets connections: live ones are closed and new ones refused until
`heal()`. The proxy runs on its own thread and event loop, so the test's loop can block.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from voxbus_cli.embedded import free_port


class NetSplit:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._flowing: asyncio.Event | None = None
        self._refusing = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="netsplit", daemon=True)
        self._serving: asyncio.Task[None] | None = None

    # -- control (from any thread) ------------------------------------------------------------

    def stall(self) -> None:
        self._call(self._stall)

    def cut(self) -> None:
        self._call(self._cut)

    def heal(self) -> None:
        self._call(self._heal)

    def _call(self, fn: Callable[[], None]) -> None:
        done = threading.Event()

        def run() -> None:
            fn()
            done.set()

        self._loop.call_soon_threadsafe(run)
        assert done.wait(10), "the proxy's loop did not answer"

    def _stall(self) -> None:
        assert self._flowing is not None
        self._flowing.clear()

    def _cut(self) -> None:
        self._refusing = True
        for writer in list(self._writers):
            writer.transport.abort()  # a reset, as when a route between them drops

    def _heal(self) -> None:
        assert self._flowing is not None
        self._refusing = False
        self._flowing.set()

    # -- the proxy ----------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._serving = self._loop.create_task(self._serve())
        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(self._serving)
        self._loop.close()

    async def _serve(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self._ready.set()
        async with server:
            await server.serve_forever()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                await self._flowing.wait()  # stalled: held here, as packets in a dead route
                writer.write(data)
                await writer.drain()
        writer.transport.abort()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10), "the proxy did not start"

    def stop(self) -> None:
        self._call(self._cut)
        assert self._serving is not None
        self._loop.call_soon_threadsafe(self._serving.cancel)
        self._thread.join(10)


@contextmanager
def netsplit(nats_url: str) -> Iterator[NetSplit]:
    proxy = NetSplit(int(nats_url.rsplit(":", 1)[1]))
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
