"""ChatModel over any OpenAI-compatible endpoint (the embedded llama.cpp server by default)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from openai import AsyncOpenAI, AsyncStream

from voxbus_common.config import Settings
from voxbus_common.providers import ChatTurn


class OpenAIChat:
    """Streaming chat completions with the openai SDK; base URL and key come from config."""

    def __init__(self, settings: Settings) -> None:
        self.name = settings.llm_model
        self._max_tokens = settings.llm_max_tokens
        self._temperature = settings.llm_temperature
        self._client = AsyncOpenAI(
            base_url=settings.llm_base_url or None,
            api_key=settings.llm_api_key or "not-needed-for-local",
            timeout=settings.llm_timeout_s,
            max_retries=1,
        )

    async def stream(self, messages: list[ChatTurn]) -> AsyncIterator[str]:
        response = await self._client.chat.completions.create(
            model=self.name,
            messages=[{"role": m.role, "content": m.content} for m in messages],  # type: ignore[misc]
            max_tokens=self._max_tokens,
            temperature=self._temperature,
            stream=True,
        )
        assert isinstance(response, AsyncStream)
        try:
            async for chunk in response:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        finally:
            await response.close()
