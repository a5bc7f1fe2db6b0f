"""SIP digest authentication, server side (RFC 3261 §22, RFC 2617 MD5, qop=auth).

Nonces are stateless: a timestamp signed with a per-process secret, valid for NONCE_TTL_S,
so a replica needs no shared store and a restart only costs the peer one more challenge.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time

NONCE_TTL_S = 300.0
PARAM = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')


def md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


class DigestAuth:
    def __init__(self, user: str, password: str, realm: str) -> None:
        self.user = user
        self.password = password
        self.realm = realm
        self._secret = secrets.token_bytes(16)

    def _sign(self, stamp: str) -> str:
        return hmac.new(self._secret, stamp.encode(), hashlib.sha256).hexdigest()[:20]

    def challenge(self) -> str:
        """The WWW-Authenticate value of a 401."""
        stamp = f"{time.time():.0f}"
        return (f'Digest realm="{self.realm}", nonce="{stamp}.{self._sign(stamp)}", '
                'algorithm=MD5, qop="auth"')

    def _fresh(self, nonce: str) -> bool:
        stamp, _, signature = nonce.partition(".")
        if not stamp.isdigit() or not hmac.compare_digest(signature, self._sign(stamp)):
            return False
        return abs(time.time() - int(stamp)) < NONCE_TTL_S

    def check(self, authorization: str, method: str) -> bool:
        """True when `authorization` (an Authorization header) answers our challenge."""
        if authorization[:7].lower() != "digest ":
            return False
        fields = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
                  for m in PARAM.finditer(authorization[7:])}
        if fields.get("username") != self.user or fields.get("realm") != self.realm:
            return False
        nonce, uri = fields.get("nonce", ""), fields.get("uri", "")
        if not self._fresh(nonce) or fields.get("algorithm", "MD5").upper() != "MD5":
            return False
        ha1 = md5(f"{self.user}:{self.realm}:{self.password}")
        ha2 = md5(f"{method}:{uri}")
        qop = fields.get("qop", "")
        if qop == "auth":
            expected = md5(f"{ha1}:{nonce}:{fields.get('nc', '')}:{fields.get('cnonce', '')}:"
                           f"auth:{ha2}")
        elif not qop:
            expected = md5(f"{ha1}:{nonce}:{ha2}")
        else:
            return False
        return hmac.compare_digest(expected, fields.get("response", ""))
