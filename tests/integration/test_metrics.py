"""Every service exposes Prometheus metrics; a real call moves the latency histograms, and no
metric is labelled with a call id (cardinality)."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import SPEECH
from voxbus_cli.caller import load_wav, place_call
from voxbus_cli.stack import Stack


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{port}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


async def test_services_export_latency_metrics_without_call_labels(stack: Stack) -> None:
    call_id = "metrics-call-1"
    result = await place_call(stack.gateway_url, load_wav(SPEECH / "osr_us0034_8k_s02.wav"),
                              call_id=call_id, timeout_s=120)
    assert result.turns
    scraped = {name: await scrape(port) for name, port in stack.metrics_ports.items()}
    assert set(scraped) == {"gateway", "stt", "llm", "tts", "memory"}

    gw = scraped["gateway"]
    assert total(gw, "voxbus_voice_to_voice_seconds_count") >= 1
    assert total(gw, "voxbus_calls_total", edge="pcm-ws") >= 1
    for stage in ("end_of_speech_to_final_transcript", "final_transcript_to_first_token",
                  "first_token_to_first_audio_chunk"):
        assert total(gw, "voxbus_turn_stage_seconds_count", stage=stage) >= 1, stage
    assert total(gw, "voxbus_turns_total", outcome="completed") >= 1
    assert total(gw, "voxbus_bus_hop_seconds_count", message="transcript") >= 1
    assert total(scraped["stt"], "voxbus_stt_decode_seconds_count") >= 1
    assert total(scraped["llm"], "voxbus_llm_time_to_first_token_seconds_count") >= 1
    assert total(scraped["tts"], "voxbus_tts_time_to_first_byte_seconds_count") >= 1
    assert total(scraped["memory"], "voxbus_bus_hop_seconds_count", message="call_event") >= 1

    for samples in scraped.values():
        for _, labels in samples:
            assert call_id not in dict(labels).values(), "a metric is labelled by call id"
