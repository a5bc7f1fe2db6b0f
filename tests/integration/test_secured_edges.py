"""Ingress authentication on a gateway configured like production: media tokens (with a
rotated key) on the PCM/browser edges, X-Twilio-Signature on the Twilio endpoints."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from tests.integration.conftest import assert_services_alive, extra_gateway, self_signed_certificate
from voxbus_cli.stack import Stack
from voxbus_common.tokens import MediaTokens
from voxbus_gateway.edges.twilio_auth import twilio_signature

OLD_KEY = "old:" + "o" * 40
NEW_KEY = "new:" + "n" * 40
TWILIO_TOKEN = "12345"


@pytest.fixture(scope="module")
def secured(stack: Stack) -> Iterator[str]:
    """A second gateway replica on the same bus, with auth configured. Yields its base URL."""
    with extra_gateway(stack, "secured", {"VOXBUS_TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
                                          "VOXBUS_MEDIA_TOKEN_KEYS": f"{NEW_KEY},{OLD_KEY}"}) as b:
        yield b


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def refused(http: aiohttp.ClientSession, url: str, **kw: object) -> tuple[int, str]:
    async with http.get(url, **kw) as resp:  # type: ignore[arg-type]
        return resp.status, await resp.text()


async def test_media_without_a_valid_token_is_refused_before_any_audio(
        secured: str, http: aiohttp.ClientSession) -> None:
    url = f"http://{secured}/v1/pcm"
    assert await refused(http, url) == (401, "a media token is required (query parameter "
                                             "'token')")
    status, text = await refused(http, url, params={"token": "nonsense"})
    assert status == 401 and "malformed" in text
    retired = MediaTokens("gone:" + "g" * 40).issue()
    status, text = await refused(http, url, params={"token": retired})
    assert status == 401 and "unknown or retired key" in text
    other_call = MediaTokens(NEW_KEY).issue(call_id="callA")
    status, text = await refused(http, url, params={"token": other_call, "call_id": "callB"})
    assert status == 401 and "another call" in text


@pytest.mark.parametrize("key", [NEW_KEY, OLD_KEY])
async def test_tokens_from_current_and_rotated_keys_open_a_call(
        secured: str, http: aiohttp.ClientSession, key: str) -> None:
    token = MediaTokens(key).issue(call_id=f"tok-{key[:3]}", ttl_s=60)
    ws = await http.ws_connect(f"ws://{secured}/v1/browser", params={"token": token})
    first = json.loads((await ws.receive(timeout=30)).data)
    assert first["type"] == "call" and first["call_id"] == f"tok-{key[:3]}"
    await ws.send_bytes(b"\x00" * 640)
    await ws.send_str(json.dumps({"type": "stop"}))
    events = [json.loads(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT]
    assert events[-1] == {"type": "ended", "reason": "caller hung up"}


async def test_twilio_stream_requires_a_valid_signature(
        secured: str, http: aiohttp.ClientSession, stack: Stack) -> None:
    url = f"ws://{secured}/v1/twilio"
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await http.ws_connect(url)
    assert err.value.status == 403
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await http.ws_connect(url, headers={"X-Twilio-Signature": "AAAA"})
    signature = twilio_signature(url, {}, TWILIO_TOKEN)
    ws = await http.ws_connect(url, headers={"X-Twilio-Signature": signature})
    await ws.send_str(json.dumps({"event": "connected"}))
    await ws.send_str(json.dumps({"event": "start", "streamSid": "MZs", "start": {
        "callSid": "CAsigned1", "mediaFormat": {"encoding": "audio/x-mulaw",
                                                "sampleRate": 8000}}}))
    await ws.send_str(json.dumps({"event": "stop"}))
    async for _ in ws:
        pass
    assert ws.close_code == 1000
    assert_services_alive(stack)


async def test_twiml_webhook_signature(secured: str, http: aiohttp.ClientSession) -> None:
    url = f"http://{secured}/v1/twilio/voice"
    form = {"CallSid": "CA9", "From": "+15550001111"}
    async with http.post(url, data=form, headers={"X-Twilio-Signature": "bad"}) as resp:
        assert resp.status == 403
    good = twilio_signature(url, form, TWILIO_TOKEN)
    async with http.post(url, data=form, headers={"X-Twilio-Signature": good}) as resp:
        assert resp.status == 200
        assert f"ws://{secured}/v1/twilio" in await resp.text()




@pytest.fixture(scope="module")
def tls_gateway(stack: Stack, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[tuple[str, ssl.SSLContext]]:
    cert, key, trust = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    env = {"VOXBUS_TLS_CERT_FILE": str(cert), "VOXBUS_TLS_KEY_FILE": str(key),
           "VOXBUS_MEDIA_TOKEN_KEYS": NEW_KEY}
    with extra_gateway(stack, "tls", env, ssl_context=trust) as base:
        yield base, trust


async def test_the_gateway_serves_wss_when_a_certificate_is_configured(
        tls_gateway: tuple[str, ssl.SSLContext]) -> None:
    base, trust = tls_gateway
    token = MediaTokens(NEW_KEY).issue(call_id="tls-call-1", ttl_s=60)
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientError):  # plaintext is not served
            await http.get(f"http://{base}/healthz")
        ws = await http.ws_connect(f"wss://{base}/v1/pcm", params={"token": token}, ssl=trust)
        first = json.loads((await ws.receive(timeout=30)).data)
        assert first["call_id"] == "tls-call-1"
        await ws.send_str(json.dumps({"type": "stop"}))
        events = [json.loads(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT]
    assert events[-1]["type"] == "ended"
