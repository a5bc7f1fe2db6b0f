"""The Grafana dashboard and the SLO rules against a real Prometheus server scraping the five
real services: after a real call and a real barge-in, every panel query returns data and every
recording rule evaluates. A dashboard whose queries are wrong looks exactly like one with no
traffic, so only a real server with real traffic can tell the two apart."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest

from tests.integration.conftest import SPEECH, assert_services_alive, wait_for_session
from voxbus.v1.llm_pb2 import TtsRequest
from voxbus.v1.meta_pb2 import Meta
from voxbus_cli.caller import load_wav, place_call
from voxbus_cli.embedded import free_port, spawn, stop_all, wait_for_port
from voxbus_cli.stack import Stack
from voxbus_common.audio import frame_bytes
from voxbus_common.subjects import work_tts

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "voxbus-latency.json"
RULES = ROOT / "deploy" / "grafana" / "voxbus-slo-rules.yml"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
# What Grafana's $__rate_interval becomes here: wide enough to still hold both calls when the
# queries run on a slow machine (the test server scrapes every second).
RATE_INTERVAL = "2m"
BARGE_IN_CALL = "prometheus-barge-in"
# Recording rules that stay empty while a label value was never used: the series appears with
# its first increment (metrics.py does not pre-initialise it). Each is exempt only while its
# selector has no series, so pre-initialising the label makes the test check the rule again.
EMPTY_UNTIL_FIRST_USE = {"voxbus:turns_stalled:ratio_5m": 'voxbus_turns_total{outcome="stalled"}'}

pytestmark = pytest.mark.skipif(
    not (Path(PROMETHEUS).exists() and Path(PROMTOOL).exists()),
    reason="Debian prometheus is not installed ('make test' installs it as root)")

Result = list[dict[str, Any]]


def test_slo_rules_pass_promtool() -> None:
    out = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def panel_queries() -> dict[str, str]:
    """Every target of every panel, Grafana variables substituted, keyed by panel/refId."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = {}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("${__rate_interval}", RATE_INTERVAL)
            expr = expr.replace("$__rate_interval", RATE_INTERVAL)
            assert "$" not in expr, f"unhandled variable in {panel['title']}: {expr}"
            queries[f"{panel['title']} [{target['refId']}]"] = expr
    assert len(queries) >= 14
    return queries


@pytest.fixture
def prometheus(stack: Stack, tmp_path: Path) -> Iterator[str]:
    """A real Prometheus server on a free port scraping every service; yields its base URL.
    The config is JSON (valid YAML): one target per service, our SLO rules loaded."""
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                   "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "voxbus", "static_configs": [
            {"targets": [f"127.0.0.1:{port}"], "labels": {"component": name}}
            for name, port in sorted(stack.metrics_ports.items())]}],
    }
    (tmp_path / "prometheus.yml").write_text(json.dumps(config, indent=2))
    port = free_port()
    log_path = tmp_path / "prometheus.log"
    with log_path.open("ab") as log:
        proc = spawn([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                      f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                      f"--web.listen-address=127.0.0.1:{port}"], log=log)
    try:
        wait_for_port(port, proc, 60.0, "prometheus")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_all([proc])
        print("\n===== prometheus.log (last lines) =====")
        print("\n".join(log_path.read_text(errors="replace").splitlines()[-20:]))


async def api(http: aiohttp.ClientSession, base: str, path: str, **params: str) -> Any:
    """GET a Prometheus API endpoint; a refused query (bad PromQL) fails the test at once."""
    async with http.get(f"{base}/api/v1/{path}", params=params) as resp:
        body = await resp.json()
    assert body.get("status") == "success", f"{path} {params}: {body}"
    return body["data"]


async def wait_for_targets(http: aiohttp.ClientSession, base: str, expected: int) -> None:
    """Until every service target was scraped successfully (bounded poll of the API)."""
    deadline = time.monotonic() + 120
    targets: Result = []
    while time.monotonic() < deadline:
        try:
            targets = (await api(http, base, "targets"))["activeTargets"]
        except aiohttp.ClientError:  # 503 while the server is still starting
            targets = []
        if len(targets) == expected and all(t["health"] == "up" for t in targets):
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"scrape targets not all up: {targets}")


def has_data(result: Result, finite: bool) -> bool:
    """At least one sample; with `finite`, one a panel can draw (NaN is an empty quantile)."""
    return any(not finite or math.isfinite(float(s["value"][1])) for s in result)


async def wait_for_data(http: aiohttp.ClientSession, base: str, queries: dict[str, str],
                        timeout_s: float, finite: bool = True) -> dict[str, Result]:
    """Poll each query until it has data; returns the ones that never had, with their last
    result (a bounded poll: rules evaluate and samples arrive every second)."""
    pending = dict(queries)
    last: dict[str, Result] = {}
    deadline = time.monotonic() + timeout_s
    while pending:
        for name, expr in list(pending.items()):
            last[name] = (await api(http, base, "query", query=expr))["result"]
            if has_data(last[name], finite):
                del pending[name]
        if not pending or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    return {name: last[name] for name in pending}


async def late_and_broken_work(stack: Stack, ended_call_id: str) -> None:
    """Work the services must drop, as production sees it: a clause still queued for a call
    that has ended (TTS drops it as stale), and broken work items, as a buggy or hostile
    publisher would send (each consumer counts an error, like test_bad_input)."""
    await wait_for_session(stack, ended_call_id, lambda s: s.ended_unix_ns > 0, timeout_s=30)
    late = TtsRequest(meta=Meta(call_id=ended_call_id, turn_id=1, seq=1,
                                sent_unix_ns=time.time_ns()),
                      text="A clause nobody will hear.", sample_rate=16000)
    nc = await nats.connect(stack.nats_url)
    try:
        js = nc.jetstream()
        await js.publish(work_tts(ended_call_id), late.SerializeToString())
        for subject in ("vb.work.calls", "vb.work.llm.prom-junk", "vb.work.tts.prom-junk"):
            await js.publish(subject, b"\xff\xfe not a protobuf \x00\x01")
    finally:
        await nc.close()


async def talk_over_the_agent(url: str, question: bytes, interruption: bytes
                              ) -> list[dict[str, Any]]:
    """Ask, talk over the agent's answer once 0.5 s of it has arrived, then stay on the line
    until the agent has answered the interruption too (as bench/barge_in.py does)."""
    frame = frame_bytes(16000)
    events: list[dict[str, Any]] = []
    agent_audio, two_turns = asyncio.Event(), asyncio.Event()
    agent_bytes = 0
    async with aiohttp.ClientSession() as http, http.ws_connect(
            url, params={"call_id": BARGE_IN_CALL}) as ws:

        async def receive() -> None:
            nonlocal agent_bytes
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    agent_bytes += len(msg.data)
                    if agent_bytes >= 16000:
                        agent_audio.set()
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    events.append(json.loads(msg.data))
                    if sum(e.get("type") == "turn" for e in events) >= 2:
                        two_turns.set()

        async def speak(pcm: bytes, until: asyncio.Event) -> None:
            started, n = time.monotonic(), 0
            while n * frame < len(pcm) or not until.is_set():
                await ws.send_bytes(pcm[n * frame : (n + 1) * frame].ljust(frame, b"\0"))
                n += 1
                await asyncio.sleep(max(0.0, started + n * 0.02 - time.monotonic()))

        receiver = asyncio.create_task(receive())
        await asyncio.wait_for(speak(question, until=agent_audio), timeout=90)
        await asyncio.wait_for(speak(interruption, until=two_turns), timeout=90)
        await ws.send_str(json.dumps({"type": "stop"}))
        await asyncio.wait_for(receiver, timeout=30)
    return events


async def test_every_dashboard_panel_and_recording_rule_has_data(stack: Stack,
                                                                 prometheus: str) -> None:
    queries = panel_queries()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        await wait_for_targets(http, prometheus, len(stack.metrics_ports))
        # a completed turn, then an interrupted one and the answer to the interruption, with
        # dropped work after each call: every histogram and counter moves in two separate
        # scrapes, so no rate is zero only because its series has just appeared
        first = await place_call(stack.gateway_url, load_wav(SPEECH / "osr_us0034_8k_s02.wav"),
                                 call_id="prometheus-call", timeout_s=120)
        assert first.turns, first.summary()
        await late_and_broken_work(stack, "prometheus-call")
        events = await talk_over_the_agent(stack.gateway_url,
                                           load_wav(SPEECH / "ls_test_4507-16021-0012.wav"),
                                           load_wav(SPEECH / "osr_us0034_8k_s04.wav"))
        assert any(e.get("type") == "barge_in" and e.get("phase") == "paused"
                   for e in events), f"the caller never barged in: {events[-8:]}"
        await late_and_broken_work(stack, BARGE_IN_CALL)

        empty = await wait_for_data(http, prometheus, queries, timeout_s=90)
        assert not empty, "dashboard panels without data:\n" + "\n".join(
            f"  {name}: {queries[name]} -> {result}" for name, result in empty.items())

        groups = (await api(http, prometheus, "rules"))["groups"]
        rules = [r for g in groups for r in g["rules"]]
        assert {r["type"] for r in rules} == {"recording", "alerting"}
        broken = [(r["name"], r.get("lastError")) for r in rules if r["health"] == "err"]
        assert not broken, f"rules failing to evaluate: {broken}"
        recorded = {r["name"] for r in rules if r["type"] == "recording"}
        for name, selector in EMPTY_UNTIL_FIRST_USE.items():
            if not (await api(http, prometheus, "query", query=selector))["result"]:
                recorded.discard(name)  # honestly empty: nothing to divide yet
        # a rule evaluates once it yields a sample; a ratio may be NaN or +Inf when a counter
        # series has just appeared (no rate yet), which a busy machine makes likely
        empty = await wait_for_data(http, prometheus, {n: n for n in recorded}, timeout_s=30,
                                    finite=False)
        assert not empty, f"recording rules without data: {empty}"
    assert_services_alive(stack)
