"""What the cloud speech providers share across the STT and TTS services: credential checks
and one-line errors for Azure Speech and OpenAI audio (services/{stt,tts}, docs/providers.md)."""

from __future__ import annotations

from typing import Any

import openai

OPENAI_BASE_URL = "https://api.openai.com/v1"
AZURE_AUTH_CODES = ("AuthenticationFailure", "Forbidden")


class OpenAIAudioError(RuntimeError):
    """The audio endpoint refused or could not be reached; the message says which and why."""


class AzureSpeechError(RuntimeError):
    """Azure canceled, stalled or never answered; the message carries the SDK's reason and
    details."""


def openai_client_settings(setting: str, base_url: str, api_key: str) -> tuple[str, str]:
    """(base URL, key) for the client. An explicit URL, never the SDK's OPENAI_BASE_URL
    lookup: that variable points the LLM at its endpoint, often a local one without audio.
    api.openai.com needs a key, checked here so the service fails at start."""
    if not base_url and not api_key:
        raise ValueError(f"{setting}=openai needs OPENAI_API_KEY (or VOXBUS_OPENAI_AUDIO_API_KEY)"
                         ", or VOXBUS_OPENAI_AUDIO_BASE_URL for a compatible endpoint")
    return base_url or OPENAI_BASE_URL, api_key or "not-needed-for-local"


def describe_openai_error(action: str, base_url: str, exc: openai.OpenAIError) -> str:
    """One line naming the endpoint, the HTTP status and the server's message."""
    if isinstance(exc, openai.APIStatusError):
        message = f"{action} failed: HTTP {exc.status_code} from {base_url}: {exc.message}"
        if exc.status_code in (401, 403):
            message += " (check OPENAI_API_KEY / VOXBUS_OPENAI_AUDIO_API_KEY)"
        return message
    if isinstance(exc, openai.APIConnectionError):
        return f"{action} failed: cannot reach {base_url}: {exc}"
    return f"{action} failed: {exc}"


def require_azure_credentials(setting: str, key: str, region: str) -> None:
    """Fail at construction, so a misconfigured service dies at start, not on the first call."""
    if not key or not region:
        raise ValueError(f"{setting}=azure needs AZURE_SPEECH_KEY and AZURE_SPEECH_REGION")


def sdk_name(value: Any) -> str:
    """An SDK enum member's name (or the value itself)."""
    return str(getattr(value, "name", value))
