"""What the services send a call (`vb.call.ID.out.>`), decoded by registry row and handed
to the call's conversation. A bad or unknown message is counted and logged, never raised:
one broken message must not end a call."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from nats.aio.msg import Msg

from voxbus.v1.audio_pb2 import AudioChunk, AudioResend
from voxbus.v1.llm_pb2 import TokenDelta
from voxbus.v1.speech_pb2 import Transcript, VadEvent
from voxbus_common import registry, subjects
from voxbus_common.codec import BadMessage
from voxbus_common.metrics import ERRORS, observe_hop
from voxbus_common.registry import Dispatch
from voxbus_gateway.conversation import Conversation

log = logging.getLogger(__name__)


class InboxOwner(Protocol):
    """What the inbox needs of its call."""

    conversation: Conversation
    stream_closed: asyncio.Event

    async def resend_audio(self, ask: AudioResend) -> None: ...

    async def reply_done(self, turn_id: int) -> None: ...


class CallInbox:
    def __init__(self, call: InboxOwner) -> None:
        self.call = call
        self.dispatch = (Dispatch()
                         .on(registry.AUDIO_OUT, self._on_audio)
                         .on(registry.LLM_OUT, self._on_tokens)
                         .on(registry.TRANSCRIPT, self._on_transcript)
                         .on(registry.AUDIO_RESEND, self._on_resend)
                         .on(registry.VAD, self._on_vad))

    @property
    def rows(self) -> list[registry.Row[Any]]:
        return self.dispatch.rows

    async def __call__(self, msg: Msg) -> None:
        try:
            await self.dispatch(msg)
        except BadMessage as exc:
            ERRORS.labels("gateway", "bad_bus_message").inc()
            log.warning("bad message from the bus: %s", exc, extra={"subject": msg.subject})
        except LookupError:  # (a subject under the call's out.> that no row has)
            ERRORS.labels("gateway", "bad_bus_message").inc()
            log.warning("unexpected subject on the call's bus", extra={"subject": msg.subject})

    async def _on_audio(self, chunk: AudioChunk, msg: Msg) -> None:
        observe_hop("audio_chunk", chunk.meta.sent_unix_ns, time.time_ns())
        self.call.conversation.on_audio(chunk)

    async def _on_tokens(self, delta: TokenDelta, msg: Msg) -> None:
        observe_hop("token_delta", delta.meta.sent_unix_ns, time.time_ns())
        await self.call.conversation.on_tokens(delta)
        if delta.done:
            await self.call.reply_done(delta.meta.turn_id)

    async def _on_transcript(self, transcript: Transcript, msg: Msg) -> None:
        conversation = self.call.conversation
        if not (msg.headers or {}).get(subjects.REPEAT_HEADER):
            observe_hop("transcript", transcript.meta.sent_unix_ns, time.time_ns())
        elif transcript.utterance_id > conversation.policy.finalized_utterance:
            log.warning("final transcript of utterance %d came only on its repeat "
                        "(the first copy was lost)", transcript.utterance_id)
        await conversation.on_transcript(transcript)

    async def _on_resend(self, ask: AudioResend, msg: Msg) -> None:
        await self.call.resend_audio(ask)

    async def _on_vad(self, event: VadEvent, msg: Msg) -> None:
        if event.kind == VadEvent.STREAM_CLOSED:
            self.call.stream_closed.set()
        else:
            await self.call.conversation.on_vad(event)
