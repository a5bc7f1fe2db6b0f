"""Transfers on Twilio calls: the REST request Twilio documents (form-encoded TwiML, basic
auth with the account SID) against a local fake of the API."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from voxbus_gateway.edges.twilio_rest import TwilioRest, TwilioRestError, dial_twiml

SEEN = web.AppKey("seen", list)


@pytest.fixture
async def fake_twilio() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    async def update_call(request: web.Request) -> web.Response:
        form = await request.post()
        request.app[SEEN].append({"path": request.path, "twiml": form.get("Twiml"),
                                  "auth": request.headers.get("Authorization", "")})
        if request.match_info["call"] == "CAdenied":
            return web.json_response({"message": "not found"}, status=404)
        return web.json_response({"sid": request.match_info["call"], "status": "in-progress"})

    app = web.Application()
    app[SEEN] = []
    app.router.add_post("/2010-04-01/Accounts/{account}/Calls/{call}.json", update_call)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", app[SEEN]
    await runner.cleanup()


async def test_transfer_updates_the_call_with_dial_twiml(
        fake_twilio: tuple[str, list[dict[str, Any]]]) -> None:
    base, seen = fake_twilio
    rest = TwilioRest("ACdefault", "tok", base)
    await rest.transfer("CA123", "+15550100", account_sid="ACfromstream")
    assert seen[0]["path"] == "/2010-04-01/Accounts/ACfromstream/Calls/CA123.json"
    assert seen[0]["twiml"] == dial_twiml("+15550100")
    assert seen[0]["auth"] == "Basic " + base64.b64encode(b"ACfromstream:tok").decode()
    with pytest.raises(TwilioRestError, match="HTTP 404"):
        await rest.transfer("CAdenied", "+15550100")
    with pytest.raises(TwilioRestError, match="unreachable"):
        await TwilioRest("AC", "tok", "http://127.0.0.1:9").transfer("CA1", "+1555")


def test_dial_twiml_numbers_sip_and_escaping() -> None:
    assert "<Dial><Number>+15550100</Number></Dial>" in dial_twiml("+15550100")
    assert "<Dial><Sip>sip:desk@pbx.example.com</Sip></Dial>" in dial_twiml(
        "sip:desk@pbx.example.com")
    assert "<Number>1&lt;2&amp;</Number>" in dial_twiml("1<2&")
