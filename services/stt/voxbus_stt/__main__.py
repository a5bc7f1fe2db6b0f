"""`python -m voxbus_stt`: run one STT worker."""

from __future__ import annotations

import asyncio
import logging

from voxbus_common.bus import Bus
from voxbus_common.config import Settings
from voxbus_common.plugins import is_plugin, load_plugin
from voxbus_common.providers import SpeechToText, VoiceActivityDetector
from voxbus_common.service import serve

log = logging.getLogger("voxbus_stt")
ready = asyncio.Event()


def make_stt(settings: Settings) -> SpeechToText:
    if is_plugin(settings.stt_provider):
        stt: SpeechToText = load_plugin(settings.stt_provider, settings)
        return stt
    if settings.stt_provider == "whisper":
        from voxbus_stt.whisper import WhisperSpeechToText

        return WhisperSpeechToText(settings.whisper_model_path, settings.whisper_threads)
    raise ValueError(f"unknown stt_provider {settings.stt_provider!r} "
                     f"(known: whisper, or 'module:factory')")


def make_vad(settings: Settings) -> VoiceActivityDetector:
    if is_plugin(settings.vad_provider):
        vad: VoiceActivityDetector = load_plugin(settings.vad_provider, settings)
        return vad
    if settings.vad_provider == "silero":
        from voxbus_stt.silero import SileroVoiceActivity

        return SileroVoiceActivity(settings.bus_sample_rate)
    if settings.vad_provider == "webrtc":
        from voxbus_stt.webrtc_vad import WebRtcVoiceActivity

        return WebRtcVoiceActivity(settings.bus_sample_rate)
    raise ValueError(f"unknown vad_provider {settings.vad_provider!r} "
                     f"(known: silero, webrtc, or 'module:factory')")


async def main(bus: Bus, settings: Settings, stop: asyncio.Event) -> None:
    from voxbus_stt.worker import SttWorker

    loop = asyncio.get_running_loop()
    stt = await loop.run_in_executor(None, make_stt, settings)
    make_vad(settings)  # fail fast on a bad VAD configuration
    worker = SttWorker(bus, settings, stt, lambda: make_vad(settings))
    ready.set()
    log.info("ready", extra={"stt": stt.name})
    await worker.run(stop)


if __name__ == "__main__":
    serve("stt", main, ready)
