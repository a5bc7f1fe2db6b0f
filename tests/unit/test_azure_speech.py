"""Azure Speech providers: the SDK-to-voxbus translation, fed fake results and events shaped
like the SDK's (no network, no recognizer or synthesizer objects), plus configuration."""

from __future__ import annotations

import json
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import azure.cognitiveservices.speech as speechsdk  # type: ignore[import-untyped]
import pytest

from voxbus_common.cloud_speech import AzureSpeechError
from voxbus_common.config import Settings
from voxbus_common.providers import SttCapabilities, Word
from voxbus_stt.azure_stt import (
    AzureSpeechToText,
    UtteranceCollector,
    cancellation_error,
    result_text,
    result_words,
)
from voxbus_tts.azure_tts import AudioChunks, AzureTextToSpeech, build_ssml, synthesis_error

Reason = speechsdk.ResultReason
Cancel = speechsdk.CancellationReason
Code = speechsdk.CancellationErrorCode
ENV = ("AZURE_SPEECH_KEY", "AZURE_SPEECH_REGION", "VOXBUS_AZURE_SPEECH_KEY",
       "VOXBUS_AZURE_SPEECH_REGION")


def recognition_details(reason: Any = Cancel.Error, code: Any = Code.AuthenticationFailure,
                        details: str = "WebSocket upgrade failed: 401") -> Any:
    return SimpleNamespace(reason=reason, code=code, error_details=details)


def result(reason: Any, text: str = "", details: Any = None) -> Any:
    return SimpleNamespace(reason=reason, text=text, cancellation_details=details)


def event(res: Any) -> Any:
    return SimpleNamespace(result=res)


def canceled(details: Any) -> Any:
    return SimpleNamespace(result=result(Reason.Canceled, details=details),
                           cancellation_details=details)


def test_result_reasons_map_to_text_empty_or_error() -> None:
    assert result_text(result(Reason.RecognizedSpeech, " Hello there. ")) == "Hello there."
    assert result_text(result(Reason.NoMatch)) == ""
    with pytest.raises(AzureSpeechError, match=r"Error \(AuthenticationFailure\): WebSocket"):
        result_text(result(Reason.Canceled, details=recognition_details()))


def test_cancellation_message_names_reason_details_and_credentials() -> None:
    auth = str(cancellation_error(recognition_details()))
    assert "AuthenticationFailure" in auth and "401" in auth
    assert "AZURE_SPEECH_KEY and AZURE_SPEECH_REGION" in auth
    other = str(cancellation_error(recognition_details(code=Code.ServiceTimeout, details="")))
    assert other == "Azure Speech canceled the request: Error (ServiceTimeout)"


def test_collector_joins_phrases_and_reports_partials() -> None:
    partials: list[str] = []
    c = UtteranceCollector(partials.append)
    c.on_recognizing(event(result(Reason.RecognizingSpeech, "I would")))
    c.on_recognized(event(result(Reason.RecognizedSpeech, "I would like to.")))
    c.on_recognized(event(result(Reason.NoMatch)))
    c.on_recognizing(event(result(Reason.RecognizingSpeech, "check my")))
    c.on_recognized(event(result(Reason.RecognizedSpeech, "Check my order.")))
    assert not c.done.is_set()
    c.on_canceled(canceled(recognition_details(Cancel.EndOfStream, Code.NoError, "")))
    c.on_session_stopped(SimpleNamespace(session_id="s"))
    assert c.done.is_set()
    assert partials == ["I would", "I would like to. check my"]
    assert c.text() == "I would like to. Check my order."


def detailed(text: str, words: list[tuple[str, int, int]]) -> Any:
    """A recognized event in the detailed output format (offsets in 100 ns ticks)."""
    best = {"Display": text, "Words": [{"Word": w, "Offset": o, "Duration": d}
                                       for w, o, d in words]}
    res = result(Reason.RecognizedSpeech, text)
    res.json = json.dumps({"DisplayText": text, "NBest": [best]})
    return event(res)


def test_collector_keeps_word_timings_and_the_text_so_far() -> None:
    c = UtteranceCollector()
    c.on_recognized(detailed("Hello there.", [("hello", 2_000_000, 3_000_000),
                                              ("there", 5_200_000, 2_500_000)]))
    c.on_recognizing(event(result(Reason.RecognizingSpeech, "how are")))
    assert c.so_far() == "Hello there. how are"
    c.on_recognized(event(result(Reason.RecognizedSpeech, "How are you?")))  # no JSON
    assert c.so_far() == "Hello there. How are you?"
    assert c.words == [Word("hello", 200, 500), Word("there", 520, 770)]
    assert result_words(SimpleNamespace(json="not json")) == []


def test_collector_silence_is_empty_text() -> None:
    c = UtteranceCollector()
    c.on_recognizing(event(result(Reason.RecognizingSpeech, "uh")))  # no callback: ignored
    c.on_recognized(event(result(Reason.NoMatch)))
    c.on_session_stopped(SimpleNamespace(session_id="s"))
    assert c.done.is_set() and c.text() == ""


def test_collector_error_cancellation_ends_and_raises() -> None:
    c = UtteranceCollector()
    c.on_recognized(event(result(Reason.RecognizedSpeech, "half")))
    c.on_canceled(canceled(recognition_details(details="invalid subscription key")))
    assert c.done.is_set()
    with pytest.raises(AzureSpeechError, match="invalid subscription key"):
        c.text()


def test_collector_survives_a_failing_partial_callback() -> None:
    def boom(text: str) -> None:
        raise RuntimeError(text)

    c = UtteranceCollector(boom)
    c.on_recognizing(event(result(Reason.RecognizingSpeech, "hi")))  # logged, not raised
    c.on_recognized(event(result(Reason.RecognizedSpeech, "Hi.")))
    assert c.text() == "Hi."


def synth_event(data: bytes = b"", details: Any = None) -> Any:
    return SimpleNamespace(result=SimpleNamespace(audio_data=data, cancellation_details=details))


def test_audio_chunks_stream_whole_samples_until_completed() -> None:
    audio = AudioChunks()
    audio.on_synthesizing(synth_event(b"\x01\x02\x03"))
    chunks = audio.chunks(idle_timeout_s=5.0)
    assert next(chunks) == b"\x01\x02"  # first audio before synthesis has completed
    audio.on_synthesizing(synth_event(b""))
    audio.on_synthesizing(synth_event(b"\x04\x05\x06\x07"))
    audio.on_synthesizing(synth_event(b"\x08"))
    audio.on_completed(synth_event())
    assert list(chunks) == [b"\x03\x04\x05\x06", b"\x07\x08"]
    assert audio.finished


def test_audio_chunks_raise_the_cancellation() -> None:
    audio = AudioChunks()
    audio.on_synthesizing(synth_event(b"\x00\x00"))
    details = SimpleNamespace(reason=Cancel.Error, error_code=Code.AuthenticationFailure,
                              error_details="401 Unauthorized")
    audio.on_canceled(synth_event(details=details))
    chunks = audio.chunks(idle_timeout_s=5.0)
    assert next(chunks) == b"\x00\x00"
    with pytest.raises(AzureSpeechError, match=r"AuthenticationFailure.*401.*AZURE_SPEECH_KEY"):
        next(chunks)
    assert audio.finished


def test_audio_chunks_time_out_when_the_service_goes_quiet() -> None:
    with pytest.raises(AzureSpeechError, match="no audio"):
        list(AudioChunks().chunks(idle_timeout_s=0.01))


def test_synthesis_error_without_code() -> None:
    details = SimpleNamespace(reason=Cancel.Error, error_code=Code.NoError, error_details="")
    assert str(synthesis_error(details)) == "Azure Speech canceled the synthesis: Error"


def test_ssml_escapes_text_and_attributes() -> None:
    text = 'Tom & Jerry <3 "quotes" it\'s'
    ssml = build_ssml(text, 'en-US-Jenny"Neural', "en-US")
    root = ET.fromstring(ssml)
    voice = root[0]
    assert voice.get("name") == 'en-US-Jenny"Neural'
    assert voice.text == text
    assert root.get("{http://www.w3.org/XML/1998/namespace}lang") == "en-US"


@pytest.fixture
def no_azure_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_azure_env")
def test_missing_credentials_fail_at_construction() -> None:
    from voxbus_stt.__main__ import make_stt
    from voxbus_tts.__main__ import make_tts

    with pytest.raises(ValueError, match="VOXBUS_STT_PROVIDER=azure needs AZURE_SPEECH_KEY and "
                                         "AZURE_SPEECH_REGION"):
        make_stt(Settings(stt_provider="azure"))
    with pytest.raises(ValueError, match="VOXBUS_TTS_PROVIDER=azure needs"):
        make_tts(Settings(tts_provider="azure"))
    with pytest.raises(ValueError, match="needs"):
        AzureSpeechToText("key", "")


@pytest.mark.usefixtures("no_azure_env")
def test_providers_built_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain AZURE_* names are read; building an SDK config makes no network call."""
    from voxbus_stt.__main__ import make_stt
    from voxbus_tts.__main__ import make_tts

    monkeypatch.setenv("AZURE_SPEECH_KEY", "0123456789abcdef")
    monkeypatch.setenv("AZURE_SPEECH_REGION", "westeurope")
    monkeypatch.setenv("VOXBUS_AZURE_TTS_VOICE", "en-GB-SoniaNeural")
    stt = make_stt(Settings(stt_provider="azure"))
    tts = make_tts(Settings(tts_provider="azure"))
    assert isinstance(stt, AzureSpeechToText) and isinstance(tts, AzureTextToSpeech)
    assert tts.sample_rate == 24000 and tts.name == "azure-en-GB-SoniaNeural"
    assert stt.capabilities == SttCapabilities(streaming=True, interim_results=True,
                                               word_timings=True)
    assert list(tts.synthesize("  ")) == []


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port that is bound but not listening: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


async def test_real_sdk_wiring_reports_a_refused_connection(refused_port: int) -> None:
    """The real SDK over loopback (no public network): the events reach the translation and
    a failed connection becomes AzureSpeechError in the caller's thread, not a hang."""
    base = f"ws://127.0.0.1:{refused_port}"
    tts = AzureTextToSpeech("key", "region", endpoint=f"{base}/cognitiveservices/websocket/v1")
    with pytest.raises(AzureSpeechError, match="ConnectionFailure"):
        list(tts.synthesize("Hello."))
    stt = AzureSpeechToText(
        "key", "region",
        endpoint=f"{base}/speech/recognition/conversation/cognitiveservices/v1")
    stream = stt.open_stream(16000, lambda text: None)
    stream.push(b"\x00\x00" * 1600 + b"\x00", True)  # (an odd byte waits for its pair)
    with pytest.raises(AzureSpeechError, match="ConnectionFailure"):
        await stream.finish()
