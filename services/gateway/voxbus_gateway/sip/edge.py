"""A SIP call as a gateway edge: the same internal call model as every other edge.

The INVITE is answered (200 OK with our SDP) only once the call is claimed on the bus, so a
refused call gets a SIP error instead of a 200 and a BYE, and the call starts (greeting,
STT session) only once the caller ACKed that answer: INVITEs that are never ACKed cost a
port and a timer each, until Timer H releases them. Caller audio and DTMF come from the RTP
session's queue, and so does the end of the call (BYE, CANCEL, missing ACK)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Protocol

from voxbus_gateway.sip.dialog import SipDialog

if TYPE_CHECKING:
    from voxbus_gateway.call import Call


class SipControl(Protocol):
    """What the edge needs from the SIP server (server.py)."""

    async def answer(self, dialog: SipDialog) -> None: ...

    async def confirmed(self, dialog: SipDialog) -> None: ...

    async def refer(self, dialog: SipDialog, target: str) -> bool: ...

    async def close_dialog(self, dialog: SipDialog, reason: str) -> None: ...


class SipCallEdge:
    name = "sip"
    supports_marks = False

    def __init__(self, server: SipControl, dialog: SipDialog) -> None:
        self.server = server
        self.dialog = dialog
        self.media = dialog.media
        self.caller = dialog.caller  # the From user (a phone number on a trunk)

    async def handshake(self) -> str:
        return self.dialog.call_id

    async def confirm(self) -> None:
        """Called once the call is claimed: ring (when configured), answer, and wait for
        the ACK (raises ProtocolViolation when the caller hangs up or never ACKs)."""
        await self.server.answer(self.dialog)
        await self.server.confirmed(self.dialog)

    async def pump(self, call: Call) -> tuple[str, int]:
        while True:
            kind, value = await self.media.next_item()
            if kind == "audio":
                assert isinstance(value, bytes)
                await call.on_caller_audio(value)
            elif kind == "dtmf":
                await call.on_dtmf(str(value))
            else:
                return str(value), 1000

    def end(self, reason: str) -> None:
        """The caller's side ended the call (BYE, CANCEL, no ACK): the pump returns."""
        queue = self.media.inbound
        while queue.full():
            with contextlib.suppress(Exception):
                queue.get_nowait()
        queue.put_nowait(("end", reason))

    def dtmf(self, digit: str) -> None:
        """A digit signalled in SIP INFO rather than RTP."""
        with contextlib.suppress(Exception):
            self.media.inbound.put_nowait(("dtmf", digit))

    async def send_audio(self, pcm16: bytes) -> None:
        self.media.send(pcm16)

    async def send_event(self, event: dict[str, Any]) -> None:
        """SIP has no channel for call events."""

    async def send_mark(self, name: str) -> None:
        """RTP playout is paced here; no marks."""

    async def clear(self) -> None:
        self.media.clear()

    async def transfer(self, target: str) -> bool:
        return await self.server.refer(self.dialog, target)

    async def finish(self, reason: str, code: int) -> None:
        await self.server.close_dialog(self.dialog, reason)
