import warnings

import numpy as np
import pytest

from tests.fakes import tone
from voxbus_common.g711 import (
    alaw_to_pcm16,
    pcm16_to_alaw,
    pcm16_to_ulaw,
    swap16,
    ulaw_to_pcm16,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import audioop  # reference implementation, present up to Python 3.12
    except ImportError:  # pragma: no cover
        audioop = None  # type: ignore[assignment]

ALL_SAMPLES = np.arange(-32768, 32768, dtype="<i2").tobytes()
ALL_CODES = bytes(range(256))


@pytest.mark.skipif(audioop is None, reason="audioop (the reference) is not in this Python")
def test_matches_the_reference_codec_on_every_value() -> None:
    assert audioop is not None
    assert pcm16_to_ulaw(ALL_SAMPLES) == audioop.lin2ulaw(ALL_SAMPLES, 2)
    assert pcm16_to_alaw(ALL_SAMPLES) == audioop.lin2alaw(ALL_SAMPLES, 2)
    assert ulaw_to_pcm16(ALL_CODES) == audioop.ulaw2lin(ALL_CODES, 2)
    assert alaw_to_pcm16(ALL_CODES) == audioop.alaw2lin(ALL_CODES, 2)


@pytest.mark.parametrize(("enc", "dec"), [(pcm16_to_ulaw, ulaw_to_pcm16),
                                          (pcm16_to_alaw, alaw_to_pcm16)])
def test_round_trip_error_is_small(enc, dec) -> None:  # type: ignore[no-untyped-def]
    pcm = tone(200, rate=8000, amp=0.5)
    out = np.frombuffer(dec(enc(pcm)), dtype="<i2").astype(float)
    ref = np.frombuffer(pcm, dtype="<i2").astype(float)
    assert len(enc(pcm)) == len(pcm) // 2
    snr = 10 * np.log10(np.sum(ref**2) / np.sum((ref - out) ** 2))
    assert snr > 30


def test_swap16() -> None:
    assert swap16(b"\x01\x02\x03\x04") == b"\x02\x01\x04\x03"
