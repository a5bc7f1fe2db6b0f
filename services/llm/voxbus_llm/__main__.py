"""`python -m voxbus_llm`: run one stateless LLM worker."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from voxbus_common.agent import Agent, load_agent
from voxbus_common.bus import Bus
from voxbus_common.config import LlmService
from voxbus_common.plugins import make_provider
from voxbus_common.providers import ChatModel
from voxbus_common.service import serve

if TYPE_CHECKING:
    from voxbus_llm.tools import ToolBox

log = logging.getLogger("voxbus_llm")
ready = asyncio.Event()


def _openai(settings: LlmService) -> ChatModel:
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


def make_model(settings: LlmService) -> ChatModel:
    model: ChatModel = make_provider("llm_provider", settings.llm_provider,
                                     {"openai": _openai}, settings)
    return model


async def make_tools(settings: LlmService) -> tuple[Agent | None, ToolBox]:
    """The agent's tools; its knowledge folder is indexed once, at start."""
    from voxbus_llm.tools import ToolBox

    if not settings.agent_file:
        return None, ToolBox(None)
    agent = load_agent(settings.agent_file)
    folder = agent.knowledge_dir()
    knowledge = None
    if folder is not None and agent.tools.lookup:
        from voxbus_llm.knowledge import KnowledgeBase

        knowledge = await asyncio.get_running_loop().run_in_executor(
            None, KnowledgeBase.from_folder, folder)
        log.info("knowledge indexed", extra={"folder": str(folder), "passages": len(knowledge)})
    box = ToolBox(agent, knowledge)
    await box.start()  # imports Python tools, connects MCP servers and lists their tools
    return agent, box


async def main(bus: Bus, settings: LlmService, stop: asyncio.Event) -> None:
    from voxbus_llm.worker import LlmWorker

    model = make_model(settings)
    agent, tools = await make_tools(settings)
    worker = LlmWorker(bus, settings, model, tools, agent)
    from voxbus_common.subjects import RPC_LLM_SUMMARIZE
    from voxbus_llm.summarizer import Summarizer

    background = model if not settings.llm_background_base_url else make_model(
        settings.model_copy(update={"llm_base_url": settings.llm_background_base_url}))
    summarizer = Summarizer(bus, settings, background)  # memory asks for call summaries here
    await bus.subscribe(RPC_LLM_SUMMARIZE, summarizer.on_request, queue="llm")
    ready.set()
    log.info("ready", extra={"model": model.name, "base_url": settings.llm_base_url or "openai",
                             "tools": ",".join(sorted(tools.names)) or "-"})
    await worker.run(stop)


if __name__ == "__main__":
    serve("llm", main, ready)
