"""What a caller edge (raw PCM WebSocket, Twilio, browser, ...) offers the call model."""

from __future__ import annotations

from typing import Any, Protocol


class EdgeSink(Protocol):
    """The caller side of a call, as the call state machine sees it."""

    name: str
    supports_marks: bool  # the edge reports playout progress (mark echoes)

    async def send_audio(self, pcm16: bytes) -> None:
        """One 20 ms frame of agent audio at the bus rate; the edge converts and sends it."""
        ...

    async def send_event(self, event: dict[str, Any]) -> None:
        """A call event for the caller's UI or script (transcripts, turns, errors)."""
        ...

    async def send_mark(self, name: str) -> None:
        """Ask the edge to report `name` back (via Call.on_mark) once the audio before it
        has been played. Only called when supports_marks is true."""
        ...

    async def clear(self) -> None:
        """Drop agent audio the caller has buffered but not yet heard."""
        ...


class CallerEdge(EdgeSink, Protocol):
    """A connection the gateway serves as one call (WebSocket or TCP)."""

    async def handshake(self) -> str:
        """Read the protocol's opening; return the call id (raise ProtocolViolation)."""
        ...

    async def pump(self, call: Any) -> tuple[str, int]:
        """Read caller input until the call ends; return (reason, close code)."""
        ...

    async def finish(self, reason: str, code: int) -> None:
        """Say goodbye in the protocol's terms and close the connection."""
        ...
