"""Gateway replica loss (kill -9): the calls it owned end cleanly, with what the caller said
saved and the end recorded; another gateway's call goes on. Real services and models."""

from __future__ import annotations

import signal

from tests.integration.conftest import SPEECH, gateway_process, wait_for_session, words
from voxbus_cli.caller import load_wav
from voxbus_cli.stack import Stack
from voxbus_testkit.live_call import LiveCall


async def test_calls_of_a_killed_gateway_end_with_their_transcripts(stack: Stack) -> None:
    clip = load_wav(SPEECH / "arctic_aew_a0001.wav")
    with gateway_process(stack, "doomed", {}) as (base, proc):
        async with LiveCall(stack.gateway_url) as survivor:
            async with LiveCall(f"ws://{base}/v1/pcm") as orphan:
                orphan.speak(clip)
                await orphan.wait_for(lambda e: e["type"] == "turn" and e["user_text"])
                proc.send_signal(signal.SIGKILL)
                await orphan.wait_for(lambda e: e["type"] == "socket_closed")
            session = await wait_for_session(stack, orphan.call_id,
                                             lambda s: bool(s.ended_unix_ns))
            assert session.ended_reason == "gateway lost"
            said = [t.text for t in session.turns if t.role == "user"]
            assert said and "danger trail" in words(said[0])

            survivor.speak(clip)  # the other gateway's call is unaffected
            turn = await survivor.wait_for(lambda e: e["type"] == "turn" and e["user_text"])
            assert "danger trail" in words(turn["user_text"])
