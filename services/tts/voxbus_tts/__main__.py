"""`python -m voxbus_tts`: run one stateless TTS worker."""

from __future__ import annotations

import asyncio
import logging

from voxbus_common.bus import Bus
from voxbus_common.config import TtsService
from voxbus_common.plugins import make_provider
from voxbus_common.providers import TextToSpeech
from voxbus_common.service import serve

log = logging.getLogger("voxbus_tts")
ready = asyncio.Event()


def _piper(settings: TtsService) -> TextToSpeech:
    from voxbus_tts.piper_voice import PiperTextToSpeech

    return PiperTextToSpeech(settings.piper_model_path, settings.tts_threads)


def _azure(settings: TtsService) -> TextToSpeech:
    from voxbus_tts.azure_tts import AzureTextToSpeech

    return AzureTextToSpeech(settings.azure_speech_key, settings.azure_speech_region,
                             settings.azure_tts_voice, settings.azure_speech_language)


def _openai(settings: TtsService) -> TextToSpeech:
    from voxbus_tts.openai_tts import OpenAITextToSpeech

    return OpenAITextToSpeech(settings.openai_audio_base_url, settings.openai_audio_api_key,
                              settings.openai_tts_model, settings.openai_tts_voice)


def make_tts(settings: TtsService) -> TextToSpeech:
    tts: TextToSpeech = make_provider("tts_provider", settings.tts_provider,
                                      {"piper": _piper, "azure": _azure, "openai": _openai},
                                      settings)
    return tts


async def main(bus: Bus, settings: TtsService, stop: asyncio.Event) -> None:
    from voxbus_tts.worker import TtsWorker

    tts = await asyncio.get_running_loop().run_in_executor(None, make_tts, settings)
    worker = TtsWorker(bus, settings, tts)
    await asyncio.get_running_loop().run_in_executor(  # warm-up: the first synthesis is slow
        None, lambda: b"".join(tts.synthesize("Ready.")))
    ready.set()
    log.info("ready", extra={"tts": tts.name})
    await worker.run(stop)


if __name__ == "__main__":
    serve("tts", main, ready)
