import numpy as np

from tests.fakes import tone
from voxbus_common.audio import float_to_pcm16
from voxbus_common.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from voxbus_gateway.echo import echo_correlation, is_echo_text


def noise_like_speech(seconds: float, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(int(16000 * seconds))
    envelope = 0.5 + 0.5 * np.sin(np.linspace(0, 20, x.size)) ** 2
    return float_to_pcm16(0.2 * x * envelope)


def test_delayed_attenuated_codec_echo_correlates() -> None:
    agent = noise_like_speech(1.0, 1)
    delay = 16000 * 2 * 30 // 100  # 300 ms, in bytes
    echo_src = agent[delay : delay + 3200]  # 100 ms of agent audio, coming back
    quieter = (np.frombuffer(echo_src, dtype="<i2") * 0.3).astype("<i2").tobytes()
    through_phone = ulaw_to_pcm16(pcm16_to_ulaw(quieter))
    assert echo_correlation(through_phone, agent) > 0.8


def test_another_voice_does_not_correlate() -> None:
    agent = noise_like_speech(1.0, 1)
    caller = noise_like_speech(0.1, 2)
    assert echo_correlation(caller, agent) < 0.3


def test_too_short_or_silent_is_not_echo() -> None:
    agent = tone(1000)
    assert echo_correlation(b"\x00" * 3200, agent) == 0.0
    assert echo_correlation(tone(20), agent) == 0.0
    assert echo_correlation(noise_like_speech(0.1, 3), b"\x00" * 32000) == 0.0


def test_silence_in_the_reference_does_not_inflate_the_score() -> None:
    agent = b"\x00" * 9600 + noise_like_speech(0.5, 1)
    caller = noise_like_speech(0.1, 2)
    assert 0.0 <= echo_correlation(caller, agent) < 0.3


def test_echo_by_words() -> None:
    said = "That's a great question. The weather in Paris is lovely in spring."
    assert is_echo_text("the weather in paris", said)
    assert not is_echo_text("no, I asked about London", said)
    assert not is_echo_text("", said)
