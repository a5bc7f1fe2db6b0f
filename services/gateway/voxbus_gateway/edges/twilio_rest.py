"""Twilio's REST API, for what the media stream cannot do: hand a live call to a person.

A transfer updates the call with new TwiML (`<Dial>target</Dial>`); Twilio then ends our
media stream and dials the target. https://www.twilio.com/docs/voice/api/call-resource#update-a-call-resource
"""

from __future__ import annotations

import base64
import logging
from typing import Any
from xml.sax.saxutils import escape

import aiohttp

log = logging.getLogger(__name__)


class TwilioRestError(RuntimeError):
    """Twilio refused or could not be reached; the message says which."""


def dial_twiml(target: str) -> str:
    """TwiML that connects the caller to a number or a SIP URI."""
    inner = f"<Sip>{escape(target)}</Sip>" if target.startswith("sip:") else (
        f"<Number>{escape(target)}</Number>")
    return f'<?xml version="1.0" encoding="UTF-8"?><Response><Dial>{inner}</Dial></Response>'


class TwilioRest:
    def __init__(self, account_sid: str, auth_token: str, api_base: str,
                 timeout_s: float = 10.0) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.api_base = api_base.rstrip("/")
        self.timeout_s = timeout_s

    async def transfer(self, call_sid: str, target: str, account_sid: str = "") -> None:
        """Redirect the live call `call_sid` to `target`."""
        account = account_sid or self.account_sid
        await self._post(f"Accounts/{account}/Calls/{call_sid}.json", account,
                         {"Twiml": dial_twiml(target)})

    async def create_call(self, to: str, from_: str, voice_url: str) -> str:
        """Dial `to` from `from_`; when answered, Twilio fetches `voice_url` (our TwiML
        webhook), which connects the media stream. Returns the CallSid."""
        doc = await self._post(f"Accounts/{self.account_sid}/Calls.json", self.account_sid,
                               {"To": to, "From": from_, "Url": voice_url, "Method": "POST"})
        sid = doc.get("sid")
        if not isinstance(sid, str) or not sid:
            raise TwilioRestError("Twilio answered without a call sid")
        return sid

    async def _post(self, path: str, account: str, form: dict[str, str]) -> dict[str, Any]:
        url = f"{self.api_base}/2010-04-01/{path}"
        token = base64.b64encode(f"{account}:{self.auth_token}".encode()).decode()
        headers = {"Authorization": f"Basic {token}"}
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(
                    total=self.timeout_s)) as http, http.post(
                        url, data=form, headers=headers) as resp:
                if resp.status >= 300:
                    body = (await resp.text())[:200]
                    raise TwilioRestError(f"Twilio answered HTTP {resp.status}: {body}")
                try:
                    doc = await resp.json(content_type=None)
                except ValueError:
                    return {}
                return doc if isinstance(doc, dict) else {}
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TwilioRestError(f"Twilio REST API unreachable: {exc}") from None
