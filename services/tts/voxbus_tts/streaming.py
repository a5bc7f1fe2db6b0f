"""A provider's blocking synthesis, as the pieces come: its generator runs in a worker
thread and hands each piece to the event loop, so the first chunk of a clause can go out
while the rest is still being synthesized (a streaming provider: OpenAI, Azure)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor

_END = object()


async def stream_pieces(pool: Executor, synthesize: Callable[[], Iterator[bytes]]
                        ) -> AsyncIterator[bytes]:
    """Yield what `synthesize()` yields; its exceptions are raised here. Leaving early (a
    cancelled turn) stops the thread at the provider's next piece."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()
    stop = threading.Event()

    def run() -> None:
        try:
            for piece in synthesize():
                loop.call_soon_threadsafe(queue.put_nowait, piece)
                if stop.is_set():
                    return
        except BaseException as exc:  # (handed to the loop, raised there)
            loop.call_soon_threadsafe(queue.put_nowait, exc)
            return
        loop.call_soon_threadsafe(queue.put_nowait, _END)

    worker = loop.run_in_executor(pool, run)
    try:
        while True:
            item = await queue.get()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, bytes)
            yield item
    finally:
        stop.set()
        if worker.done():
            worker.result()
