"""A small reorder buffer for carriers that deliver media frames out of order (Telnyx warns
they may) or in bursts: frames are released in sequence; a gap that persists for `depth`
frames is given up on and filled with silence, so a lost frame never stalls the call."""

from __future__ import annotations


class ReorderBuffer:
    def __init__(self, depth: int = 4, max_gap: int = 50) -> None:
        self.depth = depth
        self.max_gap = max_gap  # a jump larger than this is a reset, not loss
        self._next: int | None = None
        self._held: dict[int, bytes] = {}
        self.lost = 0
        self.late = 0

    def push(self, seq: int, payload: bytes, silence: bytes) -> list[bytes]:
        """Frames ready to play, in order (lost ones replaced by `silence`)."""
        out: list[bytes] = []
        if self._next is None or abs(seq - self._next) > self.max_gap:
            # a restart plays the frames still held: they arrived, they are not lost (the
            # fuzz suite found them silently dropped)
            out = [self._held[k] for k in sorted(self._held)]
            self._next = seq
            self._held.clear()
        if seq < self._next or seq in self._held:
            self.late += 1
            return out  # too late or duplicated: already played past it
        self._held[seq] = payload
        while self._held:
            if self._next in self._held:
                out.append(self._held.pop(self._next))
                self._next += 1
            elif len(self._held) > self.depth:
                out.append(silence)
                self.lost += 1
                self._next += 1
            else:
                break
        return out

    def drain(self, silence: bytes) -> list[bytes]:
        """Everything held, in order, gaps as `silence` (the stream went quiet: the frames
        behind a gap must not wait for packets that will never come)."""
        out: list[bytes] = []
        while self._held and self._next is not None:
            out.append(self._held.pop(self._next, silence))
            self._next += 1
        return out


class SeqUnwrap:
    """16-bit RTP sequence numbers made monotonic (65535 -> 0 continues at 65536), so the
    reorder buffer sees a wrap as the next packet, not as a stream reset (RFC 3550 A.1)."""

    def __init__(self) -> None:
        self._last: int | None = None

    def __call__(self, seq: int) -> int:
        if self._last is None:
            self._last = seq
            return seq
        delta = (seq - self._last) & 0xFFFF
        if delta >= 0x8000:
            delta -= 0x10000  # an older packet (reordered), not a jump of ~65000 forward
        extended = self._last + delta
        self._last = max(self._last, extended)
        return extended
