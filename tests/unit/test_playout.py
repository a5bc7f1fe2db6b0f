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

    player = TurnPlayer(send, 16000, lead_ms=0)
    task = asyncio.create_task(player.play())
    player.add(chunk(1, 0, True, text="second."))
    player.add(chunk(0, 1, True))
    player.add(chunk(0, 0, False, text="First,"))
    player.set_clause_count(2)
    await asyncio.wait_for(task, timeout=10)
    assert [f[:2] for f in sent] == [b"\x01\x01"] * 2 + [b"\x01\x02"] * 2 + [b"\x02\x01"] * 2
    assert player.full_text() == "First, second."
    assert player.heard_text() == "First, second."
    assert player.first_frame_ns > 0 and not player.stalled


async def test_pause_rewinds_to_the_marked_position_and_resume_continues() -> None:
    sent: list[int] = []
    marks: list[int] = []
    ten_sent = asyncio.Event()
    gate = asyncio.Event()

    async def send(frame: bytes) -> None:
        sent.append(len(sent))
        if len(sent) == 10:
            ten_sent.set()
            await gate.wait()  # hold the pacer here until the test has paused it

    async def mark(cursor: int) -> None:
        marks.append(cursor)

    player = TurnPlayer(send, 16000, lead_ms=10_000, on_mark_point=mark, mark_every_frames=5)
    player.add(chunk(0, 0, True, frames=20, text="one two three four five six seven eight"))
    player.set_clause_count(1)
    task = asyncio.create_task(player.play())
    await asyncio.wait_for(ten_sent.wait(), timeout=10)
    assert marks == [5]
    player.mark_played(5)  # the carrier echoed the first mark: 5 frames were heard
    player.pause()
    gate.set()
    await asyncio.sleep(0)
    assert player.cursor == 5 and player.heard_text() == "one two"
    player.resume()
    await asyncio.wait_for(task, timeout=10)
    assert player.cursor == 20 and marks[-1] == 20
    assert player.heard_text() == "one two"  # until the carrier echoes the last mark
    player.mark_played(20)
    assert player.heard_text().endswith("seven eight")


async def test_interrupted_turn_reports_only_heard_words() -> None:
    three_sent = asyncio.Event()

    async def send(frame: bytes) -> None:
        if player.cursor >= 2:
            three_sent.set()

    player = TurnPlayer(send, 16000, lead_ms=0)
    player.add(chunk(0, 0, True, frames=1, text="Heard this."))
    player.add(chunk(1, 0, True, frames=4, text="alpha beta gamma delta"))
    player.set_clause_count(2)
    task = asyncio.create_task(player.play())
    await asyncio.wait_for(three_sent.wait(), timeout=10)
    player.pause()
    task.cancel()
    # 3 frames heard = clause 0 (1 frame) + half of clause 1 (2 of 4 frames)
    assert player.cursor == 3
    assert player.heard_text() == "Heard this. alpha beta"


async def test_missing_clause_stalls_instead_of_hanging() -> None:
    async def send(frame: bytes) -> None:
        return None

    player = TurnPlayer(send, 16000, stall_timeout_s=0.05)
    player.set_clause_count(1)
    await asyncio.wait_for(player.play(), timeout=10)
    assert player.stalled and player.heard_text() == ""
