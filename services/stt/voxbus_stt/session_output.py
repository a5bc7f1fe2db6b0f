"""What a call's recognition says on the bus: VAD events and transcripts, each final twice."""

from __future__ import annotations

import asyncio
import contextlib

from voxbus.v1.speech_pb2 import Transcript, TranscriptWord, VadEvent
from voxbus_common import subjects
from voxbus_common.bus import Bus

FINAL_REPEAT_S = 0.5  # a final transcript is published again after this (see _repeat)


class SessionOutput:
    def __init__(self, bus: Bus, call_id: str) -> None:
        self.bus = bus
        self.call_id = call_id
        self.repeats: set[asyncio.Task[None]] = set()

    async def vad(self, kind: VadEvent.Kind.ValueType, offset_ms: int, uid: int) -> None:
        subject = subjects.vad(self.call_id)
        msg = VadEvent(meta=self.bus.meta(self.call_id, 0, subject), kind=kind,
                       audio_offset_ms=offset_ms, utterance_id=uid)
        await self.bus.publish(subject, msg, traced=False)

    async def transcript(self, uid: int, final: bool, text: str, start_ms: int, end_ms: int,
                         end_ns: int, decode_ms: float, stable: bool = False,
                         end_of_turn: str = "", probability: float = -1.0,
                         words: list[TranscriptWord] | None = None) -> None:
        subject = subjects.transcript(self.call_id)
        msg = Transcript(meta=self.bus.meta(self.call_id, 0, subject), utterance_id=uid,
                         final=final, text=text, speech_start_ms=start_ms, speech_end_ms=end_ms,
                         speech_end_unix_ns=end_ns, decode_ms=decode_ms, stable=stable,
                         end_of_turn=end_of_turn, end_of_turn_probability=probability,
                         words=words or ())
        await self.bus.publish(subject, msg)
        if final:
            repeat = asyncio.create_task(self._repeat(subject, msg))
            self.repeats.add(repeat)
            repeat.add_done_callback(self.repeats.discard)

    async def _repeat(self, subject: str, msg: Transcript) -> None:
        """Say a final once more: a copy published while the gateway's connection moves to
        another node (a broker node restarted) is lost, and with it the caller's turn. The
        gateway takes the first copy it gets (utterance ids)."""
        await asyncio.sleep(FINAL_REPEAT_S)
        with contextlib.suppress(Exception):  # (NATS away: the first copy is all there is)
            await self.bus.nc.publish(subject, msg.SerializeToString(),
                                      headers={subjects.REPEAT_HEADER: "1"})
