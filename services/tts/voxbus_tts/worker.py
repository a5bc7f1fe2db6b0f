"""Stateless TTS worker: any replica synthesizes any clause of any call.

Audio is resampled to the call's bus rate and cut into chunks of `tts_chunk_ms`, published
as the provider yields audio (streaming.py), so the gateway can start playout as soon as
the first chunk lands, before a streaming provider has finished the clause. A clause always
ends with a `last` chunk, even when synthesis fails, so the gateway's playout never waits
forever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from nats.aio.msg import Msg

from voxbus.v1.audio_pb2 import AudioChunk
from voxbus.v1.llm_pb2 import TtsRequest
from voxbus_common import subjects
from voxbus_common.audio import StreamResampler, frame_bytes
from voxbus_common.bus import Bus, decode
from voxbus_common.config import TtsService
from voxbus_common.logs import call_id_var, turn_id_var
from voxbus_common.metrics import ERRORS, STALE_DROPPED, TTS_FIRST_BYTE
from voxbus_common.providers import TextToSpeech
from voxbus_common.telemetry import tracer
from voxbus_common.turns import StaleTurns
from voxbus_tts.streaming import stream_pieces

log = logging.getLogger(__name__)


class TtsWorker:
    def __init__(self, bus: Bus, settings: TtsService, tts: TextToSpeech) -> None:
        self.bus = bus
        self.settings = settings
        self.tts = tts
        self.stale = StaleTurns()
        self.pool = ThreadPoolExecutor(max_workers=settings.tts_concurrency,
                                       thread_name_prefix="tts")

    async def on_request(self, msg: Msg) -> None:
        req = decode(TtsRequest, msg.data)
        with tracer().start_as_current_span("tts", attributes={
                "voxbus.turn_id": req.meta.turn_id, "voxbus.clause": req.clause_index,
                "voxbus.tts": self.tts.name}):
            await self._synthesize_clause(req)

    async def _synthesize_clause(self, req: TtsRequest) -> None:
        call_id, turn_id = req.meta.call_id, req.meta.turn_id
        subject = subjects.audio_out(call_id)
        call_id_var.set(call_id)
        turn_id_var.set(turn_id)
        if self.stale.is_stale(call_id, turn_id):
            STALE_DROPPED.labels("tts").inc()
            return
        rate = req.sample_rate or self.settings.bus_sample_rate
        started = time.perf_counter()
        step = frame_bytes(rate, self.settings.tts_chunk_ms)
        resampler = StreamResampler(self.tts.sample_rate, rate)
        pending, sent, audio = bytearray(), 0, 0

        async def send(pcm: bytes, last: bool) -> None:
            nonlocal sent
            chunk = AudioChunk(
                meta=self.bus.meta(call_id, turn_id, subject), sample_rate=rate, pcm=pcm,
                clause_index=req.clause_index, chunk_index=sent, last=last,
                text=req.text if sent == 0 else "", request_unix_ns=req.meta.sent_unix_ns,
                uninterruptible=req.uninterruptible and sent == 0)
            await self.bus.publish(subject, chunk, traced=False)
            if sent == 0 and req.meta.sent_unix_ns:
                TTS_FIRST_BYTE.observe(max(0, chunk.meta.sent_unix_ns - req.meta.sent_unix_ns)
                                       / 1e9)
            sent += 1

        try:  # chunks go out as the provider yields audio (streaming providers)
            async for piece in stream_pieces(self.pool, lambda: self.tts.synthesize(req.text)):
                if self.stale.is_stale(call_id, turn_id):
                    return
                pending += resampler.process(piece)
                while len(pending) > step:  # (one held back: the clause's end is `last`)
                    audio += step
                    await send(bytes(pending[:step]), last=False)
                    del pending[:step]
            pending += resampler.process(b"", last=True)
        except Exception:
            log.exception("synthesis failed", extra={"clause": req.clause_index})
            ERRORS.labels("tts", "synthesis_failed").inc()
        if self.stale.is_stale(call_id, turn_id):
            return
        while len(pending) > step:
            audio += step
            await send(bytes(pending[:step]), last=False)
            del pending[:step]
        audio += len(pending)
        await send(bytes(pending), last=True)  # (empty if synthesis failed or said nothing)
        log.info("clause synthesized", extra={
            "clause": req.clause_index, "ms": round((time.perf_counter() - started) * 1000),
            "audio_ms": audio * 500 // rate, "chunks": sent})

    async def run(self, stop: asyncio.Event) -> None:
        await self.stale.follow(self.bus)
        await self.bus.run_pull_worker(
            stream="VB_TTS_WORK", durable=subjects.TTS_POOL, subject="vb.work.tts.*",
            handler=self.on_request, concurrency=self.settings.tts_concurrency, stop=stop,
            ack_wait_s=self.settings.tts_ack_wait_s,  # (claimed while it runs: bus.py)
            direct=True,  # a clause does not wait out a clustered queue's election
        )
        self.pool.shutdown(wait=False, cancel_futures=True)
