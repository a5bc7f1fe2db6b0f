"""SIP transports: UDP datagrams, and TCP or TLS streams framed by Content-Length.

Each delivers (bytes of one message, the peer's address, a Link to answer on) to the
server. A stream that cannot be framed (no blank line within the size limit, a bad
Content-Length) is answered once if possible and closed: its framing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from voxbus_gateway.sip.message import MAX_MESSAGE, SipParseError, parse, split_head

log = logging.getLogger(__name__)

Addr = tuple[str, int]
STREAM_IDLE_S = 300.0  # a TCP/TLS connection that says nothing for this long is closed


@dataclass
class Link:
    """Where a message came from and how to answer on the same path."""

    kind: str  # udp | tcp | tls
    peer: Addr
    local: Addr
    _send: Callable[[bytes, Addr], None] = field(repr=False)
    closed: bool = False

    def send(self, data: bytes, to: Addr | None = None) -> None:
        if not self.closed:
            self._send(data, to or self.peer)

    @property
    def reliable(self) -> bool:
        return self.kind != "udp"


Deliver = Callable[[bytes, Link], None]


class UdpTransport(asyncio.DatagramProtocol):
    def __init__(self, deliver: Deliver) -> None:
        self.deliver = deliver
        self.transport: asyncio.DatagramTransport | None = None
        self.local: Addr = ("0.0.0.0", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.local = transport.get_extra_info("sockname")[:2]

    def _sendto(self, data: bytes, addr: Addr) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        self.deliver(data, Link("udp", addr[:2], self.local, self._sendto))

    def error_received(self, exc: Exception) -> None:
        log.debug("sip udp socket error: %s", exc)


async def serve_stream(deliver: Deliver, host: str, port: int,
                       tls: ssl.SSLContext | None) -> asyncio.Server:
    """A TCP (or, with `tls`, TLS) SIP listener."""
    kind = "tls" if tls else "tcp"

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")[:2]
        local = writer.get_extra_info("sockname")[:2]

        def send(data: bytes, _to: Addr) -> None:
            if not writer.is_closing():
                writer.write(data)

        link = Link(kind, peer, local, send)
        try:
            await _read_messages(reader, writer, link, deliver)
        except (ConnectionError, TimeoutError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            link.closed = True
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    return await asyncio.start_server(connection, host, port, ssl=tls)


async def _read_messages(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         link: Link, deliver: Deliver) -> None:
    buffer = b""
    while True:
        chunk = await asyncio.wait_for(reader.read(65536), STREAM_IDLE_S)
        if not chunk:
            return
        buffer += chunk
        while buffer:
            if buffer.startswith(b"\r\n"):  # keep-alive ping (RFC 5626 §3.5.1): pong
                if buffer.startswith(b"\r\n\r\n"):
                    writer.write(b"\r\n")
                    buffer = buffer[4:]
                    continue
                buffer = buffer[2:]
                continue
            parts = split_head(buffer)
            if parts is None:
                if len(buffer) > MAX_MESSAGE:
                    return  # no message boundary in sight: framing lost
                break
            try:
                msg, used = parse(buffer, stream=True)
            except SipParseError as exc:
                if "shorter than Content-Length" in str(exc) and len(buffer) <= MAX_MESSAGE:
                    break  # the body is still arriving
                deliver(buffer[: len(parts[0]) + 4], link)  # answered 400 where possible
                return
            del msg
            deliver(buffer[:used], link)
            buffer = buffer[used:]
