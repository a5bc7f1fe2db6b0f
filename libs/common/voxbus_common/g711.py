"""G.711 μ-law and A-law (ITU-T G.711), table-driven with numpy.

Carriers send 8 kHz G.711 in 20 ms frames (160 bytes). `audioop` is gone from Python 3.13,
so the codec lives here: 64 K-entry encode tables and 256-entry decode tables built once.
"""

from __future__ import annotations

import numpy as np

_BIAS = 0x84


def _ulaw_decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    x = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(sign != 0, -x, x).astype("<i2")


def _alaw_decode_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    sign = a & 0x80
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    x = np.where(exponent == 0, (mantissa << 4) + 8,
                 ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(sign != 0, x, -x).astype("<i2")


def _segment(magnitude: np.ndarray) -> np.ndarray:
    """Index of the highest set bit above bit 7 (0 for values < 256), capped at 7."""
    seg = np.zeros(magnitude.shape, dtype=np.int32)
    for bit in range(8, 15):
        seg = np.where(magnitude >= (1 << bit), bit - 7, seg)
    return seg


def _ulaw_encode_table() -> np.ndarray:
    # The classic 14-bit formulation (Sun g711.c, as in CPython's audioop), bit-exact.
    x = np.arange(-32768, 32768, dtype=np.int32) >> 2
    mask = np.where(x < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(x), 8159) + 0x21
    seg = np.zeros(x.shape, dtype=np.int32)
    for end in (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF):
        seg += magnitude > end  # segment = how many segment ends the value exceeds
    code = ((seg << 4) | ((magnitude >> (seg + 1)) & 0x0F)) ^ mask
    code = np.where(magnitude > 0x1FFF, 0x7F ^ mask, code)  # beyond the last segment
    return _by_uint16(code & 0xFF)


def _alaw_encode_table() -> np.ndarray:
    x = np.arange(-32768, 32768, dtype=np.int32)
    sign = np.where(x >= 0, 0x80, 0)
    magnitude = np.where(x >= 0, x, -x - 1)
    exponent = _segment(magnitude)
    mantissa = np.where(exponent == 0, magnitude >> 4, magnitude >> (exponent + 3)) & 0x0F
    code = (sign | (exponent << 4) | mantissa) ^ 0x55
    return _by_uint16(code)


def _by_uint16(code: np.ndarray) -> np.ndarray:
    """Re-index a table built over -32768..32767 so that it is indexed by the uint16 view."""
    table = np.empty(65536, dtype=np.uint8)
    table[np.arange(-32768, 32768, dtype=np.int32).astype(np.uint16)] = code.astype(np.uint8)
    return table


_ULAW_DEC = _ulaw_decode_table()
_ALAW_DEC = _alaw_decode_table()
_ULAW_ENC = _ulaw_encode_table()
_ALAW_ENC = _alaw_encode_table()


def ulaw_to_pcm16(data: bytes) -> bytes:
    return bytes(_ULAW_DEC[np.frombuffer(data, dtype=np.uint8)].tobytes())


def alaw_to_pcm16(data: bytes) -> bytes:
    return bytes(_ALAW_DEC[np.frombuffer(data, dtype=np.uint8)].tobytes())


def pcm16_to_ulaw(pcm: bytes) -> bytes:
    return bytes(_ULAW_ENC[np.frombuffer(pcm, dtype="<u2")].tobytes())


def pcm16_to_alaw(pcm: bytes) -> bytes:
    return bytes(_ALAW_ENC[np.frombuffer(pcm, dtype="<u2")].tobytes())


def swap16(pcm: bytes) -> bytes:
    """Big-endian <-> little-endian 16-bit samples (L16 on the wire is big-endian)."""
    return bytes(np.frombuffer(pcm, dtype="<i2").byteswap().tobytes())
