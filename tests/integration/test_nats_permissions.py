"""The NATS permission contract against a real nats-server with the generated configuration
(`voxbus nats-config`): each service, connected as its own user through the real Bus, does
its whole part of a turn (streams, work queues, ordered consumers, KV, request/reply, pings)
without a single violation, and what the contract does not grant is refused by the server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from tests.nats_auth import AuthServer, auth_server, probe
from voxbus.v1.audio_pb2 import AudioChunk, AudioFrame
from voxbus.v1.call_pb2 import CallAnnounce, CallEvent
from voxbus.v1.llm_pb2 import (
    ContextReply,
    ContextRequest,
    LlmRequest,
    SummarizeReply,
    SummarizeRequest,
    TokenDelta,
    TtsRequest,
)
from voxbus.v1.memory_pb2 import Session
from voxbus.v1.speech_pb2 import Transcript, VadEvent
from voxbus_common import subjects as s
from voxbus_common.bus import Bus, decode
from voxbus_common.nats_permissions import SERVICES

T = TypeVar("T")
CALL = "cperm1"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    with auth_server(Path(tmp_path_factory.mktemp("nats-auth"))) as srv:
        yield srv


async def next_of(queue: asyncio.Queue[T]) -> T:
    return await asyncio.wait_for(queue.get(), 15.0)


def answer(bus: Bus, reply: Callable[[Msg], bytes]) -> Callable[[Msg], Awaitable[None]]:
    async def respond(msg: Msg) -> None:
        await bus.nc.publish(msg.reply, reply(msg))
    return respond


def pong(name: str) -> Callable[[Msg], bytes]:
    return lambda msg: name.encode()


@contextlib.asynccontextmanager
async def buses(server: AuthServer) -> AsyncIterator[dict[str, Bus]]:
    connected = {role: await Bus.connect(server.settings(role), f"{role}-test")
                 for role in SERVICES}
    try:
        yield connected
    finally:
        for bus in connected.values():
            await bus.close()


async def test_every_service_does_its_part_as_its_own_user(
        server: AuthServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="voxbus_common.bus")
    stop = asyncio.Event()
    async with buses(server) as b:
        gw, stt, llm, tts, mem = (b[r] for r in SERVICES)
        for bus in (gw, stt, llm, tts, mem):  # any start order: a worker bootstraps streams
            await bus.ensure_streams()
            await bus.subscribe(s.RPC_PING, answer(bus, pong(bus.service)))

        queues: dict[str, asyncio.Queue[Msg]] = {
            k: asyncio.Queue() for k in ("gw_out", "stt_ctl", "calls", "frames", "llm_work",
                                         "tts_work", "events")}
        await gw.subscribe(s.call_out_all(CALL), queues["gw_out"].put)
        await stt.subscribe(s.CONTROL_ALL, queues["stt_ctl"].put)
        workers = [
            asyncio.create_task(stt.run_pull_worker(
                stream="VB_CALLS", durable="stt-workers", subject=s.WORK_CALLS,
                handler=queues["calls"].put, concurrency=1, stop=stop)),
            asyncio.create_task(llm.run_pull_worker(
                stream="VB_LLM_WORK", durable="llm-workers", subject="vb.work.llm.*",
                handler=queues["llm_work"].put, concurrency=1, stop=stop)),
            asyncio.create_task(tts.run_pull_worker(
                stream="VB_TTS_WORK", durable="tts-workers", subject="vb.work.tts.*",
                handler=queues["tts_work"].put, concurrency=1, stop=stop)),
            asyncio.create_task(mem.run_pull_worker(
                stream="VB_EVENTS", durable="memory-recorder", subject=s.CONTROL_ALL,
                handler=queues["events"].put, concurrency=1, stop=stop)),
        ]
        await mem.subscribe(s.RPC_MEMORY_CONTEXT, answer(mem, lambda m: ContextReply(
            summary="earlier").SerializeToString()), queue="memory")
        await llm.subscribe(s.RPC_LLM_SUMMARIZE, answer(llm, lambda m: SummarizeReply(
            summary="short").SerializeToString()), queue="llm")
        for bus in (gw, stt, llm, tts, mem):  # the server knows every subscription
            await bus.nc.flush()

        # gateway: the call starts (acked event + announce), caller audio (core publish)
        started = CallEvent(meta=gw.meta(CALL, 0, s.control(CALL)),
                            started=CallEvent.Started(sample_rate=16000, edge="pcm-ws"))
        await gw.publish_acked(s.control(CALL), started)
        await gw.publish_acked(s.WORK_CALLS, CallAnnounce(
            meta=gw.meta(CALL, 0, s.WORK_CALLS), sample_rate=16000), msg_id=f"announce-{CALL}")
        assert decode(CallEvent, (await next_of(queues["stt_ctl"])).data).HasField("started")
        assert decode(CallAnnounce, (await next_of(queues["calls"])).data).meta.call_id == CALL
        await stt.ordered(s.audio_in(CALL), queues["frames"].put)
        await gw.publish(s.audio_in(CALL), AudioFrame(pcm=b"\0" * 640), traced=False)
        assert decode(AudioFrame, (await next_of(queues["frames"])).data).pcm

        # stt: VAD and transcript to the gateway, its heartbeat and checkpoint in vb_stt
        await stt.publish(s.vad(CALL), VadEvent(kind=VadEvent.SPEECH_END), traced=False)
        await stt.publish(s.transcript(CALL), Transcript(final=True, text="hello"))
        stt_kv = await stt.stt_kv()
        watcher = await (await gw.stt_kv()).watch("replica.*")
        await stt_kv.put("replica.stt-test", b'{"t": 0}')
        await stt_kv.put(f"call.{CALL}", b'{"owner": "stt-test"}')

        # gateway: the turn goes to the LLM work queue; llm asks memory, streams, queues TTS
        await gw.publish_acked(s.work_llm(CALL), LlmRequest(user_text="hello"))
        assert decode(LlmRequest, (await next_of(queues["llm_work"])).data).user_text
        ctx = await llm.nc.request(s.RPC_MEMORY_CONTEXT, ContextRequest().SerializeToString(),
                                   timeout=10)
        assert decode(ContextReply, ctx.data).summary == "earlier"
        await llm.publish(s.llm_out(CALL), TokenDelta(text="hi", done=True))
        await llm.publish_acked(s.work_tts(CALL), TtsRequest(text="hi"), msg_id=f"{CALL}-1-0")
        assert decode(TtsRequest, (await next_of(queues["tts_work"])).data).text == "hi"
        await tts.publish(s.audio_out(CALL), AudioChunk(pcm=b"\0" * 320), traced=False)

        heard: set[str] = set()
        while len(heard) < 4:  # vad, transcript, tokens, agent audio
            heard.add((await next_of(queues["gw_out"])).subject.rsplit(".", 1)[1])
        assert heard == {"vad", "transcript", "llm", "audio"}

        # memory: the durable recorder, both buckets, a summary from any llm replica
        event = decode(CallEvent, (await next_of(queues["events"])).data)
        assert event.meta.call_id == CALL
        await (await mem.sessions_kv()).put(CALL, Session(call_id=CALL).SerializeToString())
        await (await mem.callers_kv()).put("abc123", b"notes")
        summary = await mem.nc.request(s.RPC_LLM_SUMMARIZE,
                                       SummarizeRequest().SerializeToString(), timeout=10)
        assert decode(SummarizeReply, summary.data).summary == "short"

        # gateway: reads the session (control API) and the STT heartbeats (failover watch)
        entry = await (await gw.sessions_kv()).get(CALL)
        assert decode(Session, entry.value or b"").call_id == CALL
        beat = None
        while beat is None:  # (None marks the end of the initial values)
            beat = await watcher.updates(timeout=10)  # type: ignore[no-untyped-call]
        assert beat.key == "replica.stt-test"
        assert (await (await gw.stt_kv()).get(f"call.{CALL}")).value

        # admin: every service answers a ping
        admin = await probe(server.settings("admin"))
        inbox = admin.nc.new_inbox()
        sub = await admin.nc.subscribe(inbox)
        await admin.nc.publish(s.RPC_PING, b"", reply=inbox)
        pongs = {(await sub.next_msg(timeout=10)).data.decode() for _ in SERVICES}
        assert pongs == set(SERVICES)
        await admin.close()
        await watcher.stop()

        stop.set()
        await asyncio.wait_for(asyncio.gather(*workers), 15)
    assert not [r.getMessage() for r in caplog.records if "violation" in r.getMessage()]
    assert not [r.getMessage() for r in caplog.records if "differs" in r.getMessage()]
    assert server.violations() == []


async def test_a_wrong_password_is_refused(server: AuthServer) -> None:
    for settings in (server.settings("gateway", nats_password="not-the-password"),
                     server.settings("gateway", nats_user="nobody"),
                     server.settings("gateway", nats_user="", nats_password="")):
        with pytest.raises(nats.errors.Error) as refused:
            await probe(settings)
        assert "authorization violation" in str(refused.value).lower()


Action = Callable[[Client], Awaitable[object]]
FORGED = "cforged"


def _pub(subject: str) -> Action:
    return lambda nc: nc.publish(subject, b"forged")


def _sub(subject: str) -> Action:
    return lambda nc: nc.subscribe(subject)


REFUSED: list[tuple[str, str, Action, str]] = [
    # (role, what it tries, the attempt, the subject the server names)
    ("tts", "publish a call event", _pub(s.control(FORGED)), s.control(FORGED)),
    *[(role, "publish caller audio", _pub(s.audio_in(FORGED)), s.audio_in(FORGED))
      for role in ("stt", "llm", "tts", "memory", "admin")],
    ("stt", "publish LLM tokens", _pub(s.llm_out(FORGED)), s.llm_out(FORGED)),
    ("tts", "ask memory to forget a caller", _pub(s.RPC_MEMORY_FORGET), s.RPC_MEMORY_FORGET),
    ("admin", "publish a call event", _pub(s.control(FORGED)), s.control(FORGED)),
    ("llm", "subscribe to caller audio", _sub("vb.call.*.in.audio"), "vb.call.*.in.audio"),
    ("tts", "read transcripts", _sub("vb.call.*.out.>"), "vb.call.*.out.>"),
    ("llm", "read caller audio from its stream",
     lambda nc: nc.jetstream().subscribe(s.audio_in(FORGED), stream="VB_AUDIO",
                                         ordered_consumer=True),
     "$JS.API.CONSUMER.CREATE.VB_AUDIO"),
    ("llm", "take the memory recorder's events",
     lambda nc: nc.jetstream().pull_subscribe(s.CONTROL_ALL, durable="memory-recorder",
                                              stream="VB_EVENTS"),
     "$JS.API.CONSUMER.INFO.VB_EVENTS.memory-recorder"),
    ("stt", "open caller memory", lambda nc: nc.jetstream().key_value(s.CALLERS_BUCKET),
     f"$JS.API.STREAM.INFO.KV_{s.CALLERS_BUCKET}"),
    ("stt", "read a caller's memory",
     lambda nc: nc.jetstream().get_msg(f"KV_{s.CALLERS_BUCKET}", direct=True,
                                       subject=f"$KV.{s.CALLERS_BUCKET}.abc123"),
     f"$JS.API.DIRECT.GET.KV_{s.CALLERS_BUCKET}"),
    ("tts", "watch caller memory", _sub(f"$KV.{s.CALLERS_BUCKET}.>"),
     f"$KV.{s.CALLERS_BUCKET}.>"),
    ("gateway", "write a session", _pub(f"$KV.{s.SESSIONS_BUCKET}.{FORGED}"),
     f"$KV.{s.SESSIONS_BUCKET}.{FORGED}"),
    ("stt", "read everyone's replies", _sub("_INBOX.>"), "_INBOX.>"),
    ("stt", "read memory's replies", _sub("_INBOX_memory.>"), "_INBOX_memory.>"),
    ("gateway", "reconfigure a stream",
     lambda nc: nc.jetstream().update_stream(StreamConfig(
         name="VB_EVENTS", subjects=[s.CONTROL_ALL, "vb.rpc.>"])),
     "$JS.API.STREAM.UPDATE.VB_EVENTS"),
    ("tts", "delete a stream", lambda nc: nc.jetstream().delete_stream("VB_AUDIO"),
     "$JS.API.STREAM.DELETE.VB_AUDIO"),
]


@pytest.mark.parametrize(("role", "what", "attempt", "subject"), REFUSED,
                         ids=[f"{r[0]}: {r[1]}" for r in REFUSED])
async def test_what_the_contract_does_not_grant_is_refused(
        server: AuthServer, role: str, what: str, attempt: Action, subject: str) -> None:
    p = await probe(server.settings(role))
    task = asyncio.ensure_future(attempt(p.nc))  # JetStream requests get no answer: cancelled
    try:
        await p.refused(subject)
        assert p.nc.is_connected  # refused, not disconnected: the service goes on
    finally:
        task.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await task
        await p.close()


async def test_a_refused_jetstream_publish_is_not_stored(server: AuthServer) -> None:
    admin = await Bus.connect(server.settings("admin"), "admin-test")
    await admin.ensure_streams()
    tts = await probe(server.settings("tts"))
    try:
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await tts.nc.jetstream().publish(s.control(FORGED), b"forged", timeout=2.0)
        await tts.refused(s.control(FORGED))
        with pytest.raises(NotFoundError):
            await admin.js.get_last_msg("VB_EVENTS", s.control(FORGED))
    finally:
        await tts.close()
        await admin.close()
