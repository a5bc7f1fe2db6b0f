import asyncio

from voxbus.v1.audio_pb2 import AudioChunk
from voxbus_gateway.playout import TurnPlayer


def chunk(clause: int, index: int, last: bool, frames: int = 2, text: str = "") -> AudioChunk:
    pcm = bytes([clause + 1, index + 1]) * (320 * frames)
    return AudioChunk(pcm=pcm, clause_index=clause, chunk_index=index, last=last, text=text)


async def test_out_of_order_chunks_play_in_order() -> None:
    sent: list[bytes] = []

    async def send(frame: bytes) -> None:
        sent.append(frame)

    player = TurnPlayer(send, 16000, lead_ms=10_000)  # large lead: no pacing waits
    task = asyncio.create_task(player.play())
    player.add(chunk(1, 0, True, text="second."))
    player.add(chunk(0, 1, True))
    player.add(chunk(0, 0, False, text="First,"))
    player.set_clause_count(2)
    await asyncio.wait_for(task, timeout=10)
    assert [f[:2] for f in sent] == [b"\x01\x01"] * 2 + [b"\x01\x02"] * 2 + [b"\x02\x01"] * 2
    assert player.heard_text() == "First, second."
    assert player.first_frame_ns > 0 and not player.stalled


async def test_interrupted_turn_reports_only_played_clauses() -> None:
    played = asyncio.Event()

    async def send(frame: bytes) -> None:
        if frame[:1] == b"\x02":
            played.set()
            await asyncio.Event().wait()  # the caller never finishes hearing clause 1

    player = TurnPlayer(send, 16000, lead_ms=10_000)
    task = asyncio.create_task(player.play())
    player.add(chunk(0, 0, True, text="Heard this."))
    player.add(chunk(1, 0, True, text="Not this."))
    player.set_clause_count(2)
    await asyncio.wait_for(played.wait(), timeout=10)
    task.cancel()
    assert player.heard_text() == "Heard this."


async def test_missing_clause_stalls_instead_of_hanging() -> None:
    async def send(frame: bytes) -> None:
        return None

    player = TurnPlayer(send, 16000, stall_timeout_s=0.05)
    player.set_clause_count(1)
    await asyncio.wait_for(player.play(), timeout=10)
    assert player.stalled and player.heard_text() == ""
