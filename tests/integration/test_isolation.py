"""Session isolation: a second connection that names a live call's id, on the same gateway
or on another replica, is refused, and the call it tried to join goes on undisturbed.
(Media tokens bound to one call are refused for another: test_secured_edges.py.)"""

from __future__ import annotations

import json

import aiohttp

from tests.integration.conftest import SPEECH, extra_gateway, words
from voxbus_cli.caller import load_wav
from voxbus_cli.stack import Stack
from voxbus_testkit.live_call import LiveCall


async def test_a_live_call_id_cannot_be_joined_from_any_gateway(stack: Stack) -> None:
    with extra_gateway(stack, "isolation", {}) as other:
        async with LiveCall(stack.gateway_url, call_id="iso-call-a") as call, \
                aiohttp.ClientSession() as http:
            async with http.get(stack.gateway_url.replace("ws://", "http://"),
                                params={"call_id": "iso-call-a"},
                                headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                         "Sec-WebSocket-Version": "13",
                                         "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
                                ) as same_gateway:
                assert same_gateway.status == 409
            intruder = await http.ws_connect(f"ws://{other}/v1/pcm",
                                             params={"call_id": "iso-call-a"})
            events = [json.loads(m.data) async for m in intruder
                      if m.type == aiohttp.WSMsgType.TEXT]
            assert events[0] == {"type": "error",
                                 "message": "call iso-call-a is already connected"}
            assert not any(e["type"] == "call" for e in events)
            await intruder.close()

            call.speak(load_wav(SPEECH / "arctic_aew_a0001.wav"))  # the real caller goes on
            turn = await call.wait_for(lambda e: e["type"] == "turn" and e["user_text"])
            assert "danger trail" in words(turn["user_text"])
            assert not [e for e in call.events if e["type"] == "error"]
