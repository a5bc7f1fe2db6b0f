"""`python -m voxbus_stt`: run one STT worker."""

from __future__ import annotations

import asyncio
import logging

from voxbus_common.bus import Bus
from voxbus_common.config import SttService
from voxbus_common.plugins import make_provider
from voxbus_common.providers import (
    EndOfTurnDetector,
    SpeechToText,
    StreamingSpeechToText,
    VoiceActivityDetector,
)
from voxbus_common.service import serve

log = logging.getLogger("voxbus_stt")
ready = asyncio.Event()


def _whisper(settings: SttService) -> SpeechToText:
    from voxbus_stt.whisper import WhisperSpeechToText

    return WhisperSpeechToText(settings.whisper_model_path, settings.whisper_threads,
                               short_window=settings.whisper_short_window)


def _azure(settings: SttService) -> StreamingSpeechToText:
    from voxbus_stt.azure_stt import AzureSpeechToText

    return AzureSpeechToText(settings.azure_speech_key, settings.azure_speech_region,
                             settings.azure_speech_language)


def _openai(settings: SttService) -> SpeechToText:
    from voxbus_stt.openai_stt import OpenAISpeechToText

    return OpenAISpeechToText(settings.openai_audio_base_url, settings.openai_audio_api_key,
                              settings.openai_stt_model)


def _openai_realtime(settings: SttService) -> StreamingSpeechToText:
    from voxbus_stt.openai_realtime_stt import OpenAIRealtimeSpeechToText

    return OpenAIRealtimeSpeechToText(settings.openai_audio_base_url,
                                      settings.openai_audio_api_key, settings.openai_stt_model,
                                      settings.agent_language.split("-")[0])


def _silero(settings: SttService) -> VoiceActivityDetector:
    from voxbus_stt.silero import SileroVoiceActivity

    return SileroVoiceActivity(settings.bus_sample_rate)


def _webrtc(settings: SttService) -> VoiceActivityDetector:
    from voxbus_stt.webrtc_vad import WebRtcVoiceActivity

    return WebRtcVoiceActivity(settings.bus_sample_rate)


def _smart_turn(settings: SttService) -> EndOfTurnDetector:
    from voxbus_stt.smart_turn import SmartTurnDetector

    return SmartTurnDetector(settings.eot_model_path, settings.eot_threads)


def make_end_of_turn(settings: SttService) -> EndOfTurnDetector | None:
    """The end-of-turn model for the `model` policy; None means VAD-only endpointing. A
    model that is missing or fails to load is said loudly once, and calls go on VAD-only."""
    if settings.end_of_turn != "model":
        return None
    try:
        detector: EndOfTurnDetector = make_provider(
            "eot_provider", settings.eot_provider, {"smart-turn": _smart_turn}, settings)
    except Exception as exc:
        log.error("end-of-turn model unavailable, endpointing falls back to VAD only "
                  "(%d ms hangover): %s", settings.vad_hangover_ms, exc)
        return None
    return detector


def make_stt(settings: SttService) -> SpeechToText | StreamingSpeechToText:
    """A batch provider (the worker drives it through batch_stream.py) or a streaming one."""
    stt: SpeechToText | StreamingSpeechToText = make_provider(
        "stt_provider", settings.stt_provider,
        {"whisper": _whisper, "azure": _azure, "openai": _openai,
         "openai-realtime": _openai_realtime}, settings)
    return stt


def make_vad(settings: SttService) -> VoiceActivityDetector:
    vad: VoiceActivityDetector = make_provider("vad_provider", settings.vad_provider,
                                               {"silero": _silero, "webrtc": _webrtc}, settings)
    return vad


async def main(bus: Bus, settings: SttService, stop: asyncio.Event) -> None:
    from voxbus_stt.worker import SttWorker

    loop = asyncio.get_running_loop()
    stt = await loop.run_in_executor(None, make_stt, settings)
    make_vad(settings)  # fail fast on a bad VAD configuration
    detector = await loop.run_in_executor(None, make_end_of_turn, settings)
    worker = SttWorker(bus, settings, stt, lambda: make_vad(settings), detector)
    ready.set()
    log.info("ready", extra={"stt": stt.name,
                             "end_of_turn": detector.name if detector else "vad"})
    await worker.run(stop)


if __name__ == "__main__":
    serve("stt", main, ready)
