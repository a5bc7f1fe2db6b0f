"""`python -m voxbus_llm`: run one stateless LLM worker."""

from __future__ import annotations

import asyncio
import logging

from voxbus_common.bus import Bus
from voxbus_common.config import Settings
from voxbus_common.plugins import make_provider
from voxbus_common.providers import ChatModel
from voxbus_common.service import serve

log = logging.getLogger("voxbus_llm")
ready = asyncio.Event()


def _openai(settings: Settings) -> ChatModel:
    from voxbus_llm.openai_chat import OpenAIChat

    primary = OpenAIChat(settings)
    if not (settings.llm_fallback_base_url or settings.llm_fallback_model):
        return primary
    from voxbus_llm.fallback import FallbackChat

    secondary = OpenAIChat(settings.model_copy(update={
        "llm_base_url": settings.llm_fallback_base_url or settings.llm_base_url,
        "llm_model": settings.llm_fallback_model or settings.llm_model,
        "llm_api_key": settings.llm_fallback_api_key or settings.llm_api_key}))
    return FallbackChat([primary, secondary], settings.llm_first_token_timeout_s)


def make_model(settings: Settings) -> ChatModel:
    model: ChatModel = make_provider("llm_provider", settings.llm_provider,
                                     {"openai": _openai}, settings)
    return model


async def main(bus: Bus, settings: Settings, stop: asyncio.Event) -> None:
    from voxbus_llm.worker import LlmWorker

    model = make_model(settings)
    worker = LlmWorker(bus, settings, model)
    ready.set()
    log.info("ready", extra={"model": model.name, "base_url": settings.llm_base_url or "openai"})
    await worker.run(stop)


if __name__ == "__main__":
    serve("llm", main, ready)
