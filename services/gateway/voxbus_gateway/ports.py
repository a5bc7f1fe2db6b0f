"""The narrow interfaces between a call's parts, so that none imports its owner: the
conversation sees the call as a `CallPort`, the control commands see it as a
`CommandedCall`. call.py implements both; tests drive the parts with fakes."""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol

from voxbus_common.bus import Bus
from voxbus_common.config import GatewayService
from voxbus_gateway.clock import AudioClock
from voxbus_gateway.edge import EdgeSink
from voxbus_gateway.turn import Turn


class CallPort(Protocol):
    """What the conversation (turn-taking) needs of its call: the edge, the bus, the clock."""

    settings: GatewayService
    rate: int
    edge: EdgeSink
    clock: AudioClock
    ending: bool

    def caller_audio_since(self, offset_ms: int) -> bytes: ...

    async def control(self, turn_id: int, *, wait: bool = False, **kind: Any) -> None: ...

    async def emit(self, event: dict[str, Any]) -> None: ...

    async def request_reply(self, turn: Turn, text: str, speech_end_ns: int,
                            say: str) -> None: ...

    async def prefill_reply(self, turn_id: int, text: str) -> None: ...

    def request_hangup(self, reason: str) -> None: ...

    async def transfer(self, turn_id: int, target: str) -> None: ...


class ConversationControl(Protocol):
    """What the control API may do to a call's conversation."""

    @property
    def turn_counter(self) -> int: ...

    @property
    def muted(self) -> bool: ...

    @property
    def agent_speaking(self) -> bool: ...

    async def cancel_turn(self, reason: str) -> None: ...

    async def say(self, text: str) -> bool: ...

    def set_muted(self, muted: bool) -> None: ...


class CommandedCall(Protocol):
    """A live call as the control commands (commands.py) see it."""

    bus: Bus
    settings: GatewayService
    call_id: str
    edge: EdgeSink
    gateway_id: str
    caller: str
    ending: bool
    started_unix_ns: int
    turn_log: deque[bytes]

    @property
    def conversation(self) -> ConversationControl: ...

    def request_hangup(self, reason: str) -> None: ...

    async def control(self, turn_id: int, *, wait: bool = False, **kind: Any) -> None: ...

    async def transfer(self, turn_id: int, target: str) -> None: ...

    async def watch(self, event: dict[str, Any]) -> None: ...
