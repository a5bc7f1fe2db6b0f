"""The platform on a 3-node NATS JetStream cluster (every stream and bucket with 3 replicas),
with real calls in flight while nodes fail: the node leading the call's audio stream is
killed (kill -9), then the meta leader, then a node is partitioned away and healed, then the
cluster is restarted node by node under live calls. Each time every call goes on, every
sentence is answered once and heard whole (the timed STT reports how much audio it got).
Losing quorum ends live calls with the reason and refuses new ones (503) until it returns.
Real services and nats-servers (every link through a cuttable proxy), instant models."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest
from nats.aio.client import Client as NatsClient

from tests.cluster import SplittableCluster, splittable_cluster
from tests.integration.conftest import assert_services_alive, wait_for_session
from voxbus.v1.llm_pb2 import ContextReply, ContextRequest
from voxbus.v1.meta_pb2 import Meta
from voxbus_cli.caller import load_wav
from voxbus_cli.embedded import free_port
from voxbus_cli.stack import Stack
from voxbus_common.nats_connect import server_list
from voxbus_common.subjects import RPC_MEMORY_CONTEXT, SESSIONS_BUCKET, stream_specs
from voxbus_testkit.instant import heard_ms, instant_env
from voxbus_testkit.live_call import LiveCall

ROOT = Path(__file__).resolve().parents[2]
CLIP = load_wav(ROOT / "speech" / "arctic_aew_a0001.wav")
ROLLING_CALLS = 12  # bench/cluster.py restarts the cluster under 50
WORD_MS = 100  # shorter than any word: a turn heard this much shorter lost part of one

Cluster = tuple[Stack, SplittableCluster]


@pytest.fixture(scope="module")
def clustered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("cluster")
    env = {**instant_env(), "PYTHONPATH": str(ROOT),
           "VOXBUS_STT_PROVIDER": "voxbus_testkit.instant:timed_stt", "VOXBUS_NATS_REPLICAS": "3",
           "VOXBUS_NATS_QUORUM_GRACE_S": "12"}
    with splittable_cluster(workdir / "nats", workdir / "logs") as cluster, \
            Stack(workdir=workdir, gateway_port=free_port(), log_dir=workdir / "logs",
                  nats_url=cluster.url, env=env).running() as stack:
        yield stack, cluster


async def spoken_turn(call: LiveCall, during: Callable[[], None] | None = None
                      ) -> dict[str, Any]:
    """Say the clip; `during` runs (in a thread) once the caller is heard speaking."""
    mark = len(call.events)
    call.speak(CLIP)
    if during is not None:
        await call.wait_for(lambda e: e["type"] == "vad" and e["event"] == "speech_start", mark)
        await asyncio.to_thread(during)
    return await call.wait_for(lambda e: e["type"] == "turn" and e["user_text"], mark)


def assert_whole(turn: dict[str, Any], baseline_ms: int) -> None:
    assert turn["agent_text"], turn
    assert heard_ms(turn["user_text"]) >= baseline_ms - WORD_MS, (turn, baseline_ms)


def assert_each_sentence_once(call: LiveCall, said: int) -> None:
    finals = [e for e in call.events if e["type"] == "transcript" and e["final"]]
    assert len(finals) == said, finals
    assert not [e for e in call.events if e["type"] in ("ended", "socket_closed")]


async def test_every_stream_and_bucket_has_three_replicas(clustered: Cluster) -> None:
    stack, _ = clustered
    nc = await nats.connect(server_list(stack.nats_url))
    try:
        js = nc.jetstream()
        for spec in stream_specs(30.0, 3600.0):
            assert (await js.stream_info(spec.name)).config.num_replicas == 3, spec.name
        for bucket in ("vb_sessions", "vb_calls", "vb_stt"):
            assert (await js.stream_info(f"KV_{bucket}")).config.num_replicas == 3, bucket
    finally:
        await nc.close()


async def node_loss(clustered: Cluster, pick: Callable[[SplittableCluster], int]) -> None:
    """A node killed mid-sentence: that turn and the next are whole, the node comes back."""
    stack, cluster = clustered
    async with LiveCall(stack.gateway_url) as call:
        baseline = heard_ms((await spoken_turn(call))["user_text"])
        victim = pick(cluster)
        assert_whole(await spoken_turn(call, lambda: cluster.nats.kill(victim)), baseline)
        await asyncio.to_thread(cluster.nats.start_node, victim)
        await asyncio.to_thread(cluster.nats.wait_healthy)
        assert_whole(await spoken_turn(call), baseline)  # and the call goes on
        assert_each_sentence_once(call, 3)
    assert_services_alive(stack)


async def test_killing_the_leader_of_the_audio_stream_mid_sentence(clustered: Cluster) -> None:
    await node_loss(clustered, lambda cluster: cluster.nats.stream_leader("VB_AUDIO"))


async def test_killing_the_meta_leader_mid_sentence(clustered: Cluster) -> None:
    await node_loss(clustered, lambda cluster: cluster.nats.meta_leader())


async def ask_memory(nc: NatsClient, call_id: str) -> ContextReply:
    """The LLM's context request; memory has no subscription until its connection has moved
    off the killed node (no responders), so the request is made again until it answers."""
    ask = ContextRequest(meta=Meta(call_id=call_id, turn_id=1000), max_messages=0)
    for _ in range(600):
        try:
            answer = await nc.request(RPC_MEMORY_CONTEXT, ask.SerializeToString(), timeout=30)
            return ContextReply.FromString(answer.data)
        except nats.errors.NoRespondersError:
            await asyncio.sleep(0.05)  # (polling memory's reconnect, 30 s at most)
    raise AssertionError("memory never answered after its node was killed")


async def test_the_turns_context_is_read_while_its_bucket_elects_a_leader(
        clustered: Cluster) -> None:
    """Memory answers the LLM from any replica of the sessions bucket (direct gets): losing
    the bucket's leader does not leave the next turn without the conversation so far."""
    stack, cluster = clustered
    async with LiveCall(stack.gateway_url) as call:
        await spoken_turn(call)
        said = await wait_for_session(stack, call.call_id, lambda s: any(
            t.role == "user" for t in s.turns) and s.turns[-1].role == "assistant")
        victim = cluster.nats.stream_leader(f"KV_{SESSIONS_BUCKET}")
        await asyncio.to_thread(cluster.nats.kill, victim)
        try:
            nc = await nats.connect(server_list(stack.nats_url))
            try:
                reply = await ask_memory(nc, call.call_id)
                assert not reply.error
                assert [m.content for m in reply.messages] == [t.text for t in said.turns]
                with pytest.raises(nats.errors.Error):  # the bucket had no leader (>= 4 s)
                    await nc.jetstream().get_msg(f"KV_{SESSIONS_BUCKET}", subject=(
                        f"$KV.{SESSIONS_BUCKET}.{call.call_id}"), direct=False)
            finally:
                await nc.close()
        finally:  # (the next tests need all three nodes)
            await asyncio.to_thread(cluster.nats.start_node, victim)
            await asyncio.to_thread(cluster.nats.wait_healthy)
    assert_services_alive(stack)


async def test_a_node_partitioned_away_mid_sentence_rejoins(clustered: Cluster) -> None:
    stack, cluster = clustered
    async with LiveCall(stack.gateway_url) as call:
        baseline = heard_ms((await spoken_turn(call))["user_text"])
        island = cluster.nats.stream_leader("VB_LIVE")  # transcripts and tokens lead there
        assert_whole(await spoken_turn(call, lambda: cluster.isolate(island)), baseline)
        cluster.heal(island)
        await asyncio.to_thread(cluster.nats.wait_healthy)  # caught up with the majority
        assert_whole(await spoken_turn(call), baseline)
        assert_each_sentence_once(call, 3)
    assert_services_alive(stack)


async def test_a_rolling_restart_under_live_calls(clustered: Cluster) -> None:
    stack, cluster = clustered
    async with contextlib.AsyncExitStack() as calls_open:
        calls = [await calls_open.enter_async_context(LiveCall(stack.gateway_url))
                 for _ in range(ROLLING_CALLS)]
        firsts = await asyncio.gather(*(spoken_turn(call) for call in calls))
        baselines = [heard_ms(turn["user_text"]) for turn in firsts]

        def rolling_restart() -> None:
            for index in range(len(cluster.nats.nodes)):
                cluster.nats.restart(index)

        restarting = asyncio.create_task(asyncio.to_thread(rolling_restart))
        rounds = 1
        while not restarting.done() or rounds < 3:
            turns = await asyncio.gather(*(spoken_turn(call) for call in calls))
            for turn, baseline in zip(turns, baselines, strict=True):
                assert_whole(turn, baseline)
            rounds += 1
        await restarting
        for call in calls:
            assert_each_sentence_once(call, rounds)
    assert_services_alive(stack)


def gateway_health(stack: Stack) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{stack.gateway_port}/healthz",
                                    timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


async def wait_health(stack: Stack, status: int, timeout_s: float = 90.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while (now := await asyncio.to_thread(gateway_health, stack)) != status:
        assert asyncio.get_running_loop().time() < deadline, f"/healthz stayed {now}"
        await asyncio.sleep(0.2)


async def test_losing_quorum_ends_calls_and_refuses_new_ones_until_it_returns(
        clustered: Cluster) -> None:
    stack, cluster = clustered
    async with LiveCall(stack.gateway_url) as call:
        await spoken_turn(call)
        survivor = cluster.nats.meta_leader()
        lost = [i for i in range(len(cluster.nats.nodes)) if i != survivor]
        for index in lost:
            cluster.nats.kill(index)
        ended = await call.wait_for(lambda e: e["type"] == "ended")
        assert "quorum" in ended["reason"], ended
    await wait_health(stack, 503)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        async with LiveCall(stack.gateway_url):
            pass
    assert refused.value.status == 503
    for index in lost:
        await asyncio.to_thread(cluster.nats.start_node, index)
    await asyncio.to_thread(cluster.nats.wait_healthy, 120.0)
    await wait_health(stack, 200)
    async with LiveCall(stack.gateway_url) as fresh:  # calls are taken again
        assert (await spoken_turn(fresh))["agent_text"]
    assert_services_alive(stack)
