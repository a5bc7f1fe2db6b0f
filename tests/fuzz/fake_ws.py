"""Fakes that let the fuzz suites drive a caller edge without a socket or a bus.

`FakeWs` plays a scripted list of aiohttp messages (then reports the socket closed, as
aiohttp does) and records what the edge sends; `RecordingCall` stands in for the call and
checks what the edge hands it. `drive` runs an edge's handshake and pump the way
`Gateway.serve_edge` does and returns the outcome, so a test can assert that whatever the
peer sent, the edge ends with a clean (reason, close code) or a ProtocolViolation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from aiohttp import WSMessage, WSMsgType, web

from voxbus_common.ids import validate_call_id
from voxbus_gateway.edges.base import ProtocolViolation, WsEdge

if TYPE_CHECKING:
    from voxbus_gateway.call import Call

CLOSED = WSMessage(WSMsgType.CLOSED, None, None)
MAX_CLOSE_REASON = 123  # RFC 6455: a close frame's reason is at most 123 bytes of UTF-8


class FakeWs:
    """The part of aiohttp's WebSocketResponse the edges use, over a fixed script."""

    def __init__(self, script: list[WSMessage]) -> None:
        self.script = list(script)
        self.closed = False
        self.sent_text: list[str] = []
        self.sent_bytes: list[bytes] = []
        self.close_code: int | None = None
        self.close_message = b""

    async def receive(self) -> WSMessage:
        if self.closed or not self.script:
            self.closed = True
            return CLOSED
        return self.script.pop(0)

    def __aiter__(self) -> FakeWs:
        return self

    async def __anext__(self) -> WSMessage:
        msg = await self.receive()
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            raise StopAsyncIteration
        return msg

    def exception(self) -> BaseException | None:
        return ConnectionResetError("fake socket error")

    async def send_str(self, data: str) -> None:
        assert isinstance(data, str)
        self.sent_text.append(data)

    async def send_bytes(self, data: bytes) -> None:
        assert isinstance(data, bytes)
        self.sent_bytes.append(data)

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        assert not self.closed or self.close_code is None, "closed twice"
        self.closed = True
        self.close_code = code
        self.close_message = message
        return True

    def as_response(self) -> web.WebSocketResponse:
        return cast(web.WebSocketResponse, self)


@dataclass
class RecordingCall:
    """What an edge reports to its call; checks the edge's side of the contract."""

    audio: list[bytes] = field(default_factory=list)
    dtmf: list[str] = field(default_factory=list)
    marks: list[str] = field(default_factory=list)

    async def on_caller_audio(self, pcm16: bytes) -> None:
        assert isinstance(pcm16, bytes)
        assert len(pcm16) % 2 == 0, f"odd PCM16 chunk of {len(pcm16)} bytes"
        self.audio.append(pcm16)

    async def on_dtmf(self, digit: str) -> None:
        assert isinstance(digit, str)
        self.dtmf.append(digit)

    async def on_mark(self, name: str) -> None:
        assert isinstance(name, str)
        self.marks.append(name)

    def as_call(self) -> Call:
        return cast("Call", self)


@dataclass
class Outcome:
    call_id: str = ""
    refused: ProtocolViolation | None = None  # by the handshake
    violation: ProtocolViolation | None = None  # during the call
    reason: str = ""
    code: int = 0
    call: RecordingCall = field(default_factory=RecordingCall)

    def summary(self) -> tuple[Any, ...]:
        """Everything observable about the call, for comparing two runs."""
        return (self.call_id, str(self.refused), str(self.violation), self.reason, self.code,
                self.call.audio, self.call.dtmf, self.call.marks)


def check_close(ws: FakeWs) -> None:
    """The edge closed with a valid code and a reason a peer can read."""
    if ws.close_code is None:
        return
    assert 1000 <= ws.close_code <= 4999, ws.close_code
    assert len(ws.close_message) <= MAX_CLOSE_REASON
    ws.close_message.decode("utf-8")  # a torn UTF-8 reason is itself a protocol error


async def drive(edge: WsEdge, ws: FakeWs) -> Outcome:
    """Handshake, pump and finish, as serve_edge runs them. Only the outcomes the gateway
    handles (a call id, a ProtocolViolation, a (reason, code) pair) may come out: any
    other exception propagates and fails the example."""
    out = Outcome()
    try:
        out.call_id = await edge.handshake()
    except ProtocolViolation as exc:
        out.refused = exc
        assert isinstance(exc.code, int)
        await edge.send_event({"type": "error", "message": str(exc)})
        await edge.finish(str(exc), exc.code)
        check_close(ws)
        return out
    validate_call_id(out.call_id)  # every accepted call id is one NATS subject token
    edge.caller.encode("utf-8")  # it goes into protobuf strings: valid UTF-8 only
    try:
        out.reason, out.code = await edge.pump(out.call.as_call())
    except ProtocolViolation as exc:
        out.violation = exc
        out.reason, out.code = str(exc), exc.code
    assert isinstance(out.reason, str) and isinstance(out.code, int)
    await edge.finish(out.reason, out.code)
    check_close(ws)
    return out
