"""SIP messages (RFC 3261 §7): a strict, bounded parser and a serializer.

The parser refuses anything it cannot read safely with a `SipParseError` whose reason goes
into a 400 response: oversized messages, too many or too long headers, a missing mandatory
header, a body that disagrees with Content-Length. Header names are case-insensitive and the
compact forms (v, f, t, i, m, l, c, k) are expanded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_MESSAGE = 16384  # far above any INVITE a trunk sends; a UDP SIP message must fit 64 KB
MAX_HEADERS = 80
MAX_HEADER_LINE = 2048
MANDATORY = ("via", "from", "to", "call-id", "cseq")
COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact",
           "l": "content-length", "c": "content-type", "k": "supported", "s": "subject"}
CANONICAL = {"call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate",
             "content-length": "Content-Length", "content-type": "Content-Type"}
TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")
REASONS = {100: "Trying", 180: "Ringing", 200: "OK", 202: "Accepted", 400: "Bad Request",
           401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 415: "Unsupported Media Type",
           420: "Bad Extension", 481: "Call/Transaction Does Not Exist",
           486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
           500: "Server Internal Error", 501: "Not Implemented", 503: "Service Unavailable",
           513: "Message Too Large"}


class SipParseError(ValueError):
    """A message we refuse; `status` is the response to send when it is a request."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


@dataclass
class SipMessage:
    """A request (method, uri) or a response (status, reason); headers keep their order."""

    method: str = ""
    uri: str = ""
    status: int = 0
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)  # (lower-case name, value)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return bool(self.method)

    def get(self, name: str, default: str = "") -> str:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self.headers if key == name]

    def set(self, name: str, value: str) -> None:
        name = name.lower()
        self.headers = [(k, v) for k, v in self.headers if k != name]
        self.headers.append((name, value))

    @property
    def call_id(self) -> str:
        return self.get("call-id")

    @property
    def cseq(self) -> tuple[int, str]:
        number, _, method = self.get("cseq").partition(" ")
        return int(number), method.strip()

    @property
    def branch(self) -> str:
        return param(self.get("via"), "branch")

    def to_bytes(self) -> bytes:
        start = (f"{self.method} {self.uri} SIP/2.0" if self.method
                 else f"SIP/2.0 {self.status} {self.reason or REASONS.get(self.status, '')}")
        lines = [start]
        for name, value in self.headers:
            if name != "content-length":
                lines.append(f"{header_name(name)}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


def header_name(name: str) -> str:
    return CANONICAL.get(name) or "-".join(p.capitalize() for p in name.split("-"))


def param(value: str, name: str) -> str:
    """A `;name=value` parameter of a header value ("" when absent)."""
    for part in value.split(";")[1:]:
        key, _, val = part.partition("=")
        if key.strip().lower() == name:
            return val.strip().strip('"')
    return ""


def uri_of(name_addr: str) -> str:
    """The URI of `"Name" <sip:x@y>;tag=1` or `sip:x@y;tag=1`."""
    if "<" in name_addr and ">" in name_addr:
        return name_addr[name_addr.index("<") + 1 : name_addr.index(">")]
    return name_addr.split(";")[0].strip()


def user_of(name_addr: str) -> str:
    """The user part of an address (`+15551234` of `<sip:+15551234@host>`)."""
    uri = uri_of(name_addr)
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    return rest.split("@")[0] if "@" in rest else ""


def split_head(data: bytes) -> tuple[bytes, bytes] | None:
    """(head, rest) at the blank line ending the headers; None until it has arrived."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    return data[:end], data[end + 4 :]


def parse(data: bytes, stream: bool = False) -> tuple[SipMessage, int]:
    """Parse one message from `data`; returns (message, bytes consumed). With `stream`
    (TCP/TLS) the body is taken by Content-Length and the rest left for the next message."""
    if len(data) > MAX_MESSAGE and not stream:
        raise SipParseError(f"message of {len(data)} bytes is too large", 513)
    parts = split_head(data)
    if parts is None:
        raise SipParseError("no blank line after the headers")
    head, rest = parts
    if len(head) > MAX_MESSAGE:
        raise SipParseError("headers too large", 513)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError("headers are not UTF-8") from None
    lines = text.split("\r\n")
    msg = _start_line(lines[0])
    _headers(msg, lines[1:])
    length_text = msg.get("content-length", "" if not stream else "0")
    if length_text:
        if not length_text.isdigit() or int(length_text) > MAX_MESSAGE:
            raise SipParseError(f"bad Content-Length {length_text[:20]!r}")
        length = int(length_text)
        if len(rest) < length:
            raise SipParseError("body shorter than Content-Length")
        if not stream and len(rest) > length:
            rest = rest[:length]  # UDP: trailing bytes after the body are ignored (§18.3)
    else:
        length = len(rest)
    msg.body = rest[:length]
    _check(msg)
    return msg, len(head) + 4 + length


def _start_line(line: str) -> SipMessage:
    if line.startswith("SIP/2.0 "):
        code, _, reason = line[8:].partition(" ")
        if len(code) != 3 or not code.isdigit() or not 100 <= int(code) <= 699:
            raise SipParseError(f"bad status line {line[:60]!r}")
        return SipMessage(status=int(code), reason=reason)
    parts = line.split(" ")
    if len(parts) != 3 or parts[2] != "SIP/2.0" or not TOKEN.match(parts[0]):
        raise SipParseError(f"bad request line {line[:60]!r}")
    if ":" not in parts[1] or len(parts[1]) > 512:
        raise SipParseError(f"bad Request-URI {parts[1][:60]!r}")
    return SipMessage(method=parts[0].upper(), uri=parts[1])


def _headers(msg: SipMessage, lines: list[str]) -> None:
    for line in lines:
        if len(line) > MAX_HEADER_LINE:
            raise SipParseError("header line too long")
        if line[:1] in (" ", "\t") and msg.headers:  # folded continuation (§7.3.1)
            name, value = msg.headers[-1]
            msg.headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, sep, value = line.partition(":")
        name = name.strip().lower()
        if not sep or not name or not TOKEN.match(name):
            raise SipParseError(f"bad header line {line[:60]!r}")
        name = COMPACT.get(name, name)
        if name in ("via", "contact", "route", "record-route") and "," in value \
                and "<" not in value:
            msg.headers.extend((name, v.strip()) for v in value.split(","))
        else:
            msg.headers.append((name, value.strip()))
        if len(msg.headers) > MAX_HEADERS:
            raise SipParseError("too many headers")


def _check(msg: SipMessage) -> None:
    for name in MANDATORY:
        if not msg.get(name):
            raise SipParseError(f"missing {header_name(name)} header")
    number, _, method = msg.get("cseq").partition(" ")
    if not number.isdigit() or len(number) > 10 or not method.strip():
        raise SipParseError(f"bad CSeq {msg.get('cseq')[:40]!r}")
    if msg.is_request and method.strip().upper() != msg.method:
        raise SipParseError("CSeq method does not match the request")
    if not msg.get("via").upper().startswith("SIP/2.0/"):
        raise SipParseError("bad Via header")
