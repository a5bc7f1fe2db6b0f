"""Twilio request signatures (X-Twilio-Signature): HMAC-SHA1 over the URL Twilio requested
plus, for form POSTs, every parameter as name+value sorted by name; base64; compared in
constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping


def twilio_signature(url: str, params: Mapping[str, str], auth_token: str) -> str:
    payload = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def valid_twilio_signature(url: str, params: Mapping[str, str], auth_token: str,
                           signature: str) -> bool:
    if not signature:
        return False
    expected = twilio_signature(url, params, auth_token)
    return hmac.compare_digest(expected.encode(), signature.encode())
