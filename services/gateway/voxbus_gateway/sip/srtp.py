"""SRTP with SDES keying (RFC 4568): keys travel in the SDP, so they are only offered or
accepted on a SIP-over-TLS leg; libsrtp (pylibsrtp) does the cryptography."""

from __future__ import annotations

import base64
import binascii
import os

from pylibsrtp import Error as LibSrtpError
from pylibsrtp import Policy, Session

from voxbus_gateway.sip.sdp import Crypto

PROFILES = {"AES_CM_128_HMAC_SHA1_80": Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
            "AES_CM_128_HMAC_SHA1_32": Policy.SRTP_PROFILE_AES128_CM_SHA1_32}
KEY_SALT_BYTES = 30  # 16-byte AES key + 14-byte salt


class SrtpError(ValueError):
    """A packet that fails authentication or replay checks (dropped), or a bad key."""


class SrtpContext:
    """Inbound and outbound SRTP sessions for one call: theirs decrypts what they send,
    ours (a fresh random key, put in our answer) encrypts what we send."""

    def __init__(self, theirs: Crypto) -> None:
        profile = PROFILES.get(theirs.suite)
        if profile is None:
            raise SrtpError(f"unsupported crypto suite {theirs.suite}")
        try:
            their_key = base64.b64decode(theirs.key_b64, validate=True)
        except (binascii.Error, ValueError):
            raise SrtpError("crypto key is not base64") from None
        if len(their_key) != KEY_SALT_BYTES:
            raise SrtpError(f"crypto key of {len(their_key)} bytes, expected 30")
        our_key = os.urandom(KEY_SALT_BYTES)
        self.ours = Crypto(theirs.tag, theirs.suite, base64.b64encode(our_key).decode())
        self._rx = Session(Policy(key=their_key, ssrc_type=Policy.SSRC_ANY_INBOUND,
                                  srtp_profile=profile))
        self._tx = Session(Policy(key=our_key, ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                                  srtp_profile=profile))

    def protect(self, rtp: bytes) -> bytes:
        return self._tx.protect(rtp)

    def unprotect(self, srtp: bytes) -> bytes:
        try:
            return self._rx.unprotect(srtp)
        except LibSrtpError as exc:
            raise SrtpError(f"SRTP packet refused: {exc}") from None

    def protect_rtcp(self, rtcp: bytes) -> bytes:
        return self._tx.protect_rtcp(rtcp)

    def unprotect_rtcp(self, srtcp: bytes) -> bytes:
        try:
            return self._rx.unprotect_rtcp(srtcp)
        except LibSrtpError as exc:
            raise SrtpError(f"SRTCP packet refused: {exc}") from None
