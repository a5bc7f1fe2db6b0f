"""Structured logs with the call id on every line.

The call id lives in a context variable that each per-call task sets once; the formatter
adds it (and any `extra=` fields) to every record, as key=value text or as JSON.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

call_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("call_id", default="-")
turn_id_var: contextvars.ContextVar[int] = contextvars.ContextVar("turn_id", default=0)

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "call_id"):
            record.call_id = call_id_var.get()
        if not hasattr(record, "turn_id"):
            record.turn_id = turn_id_var.get()
        return True


class _RedactingFilter(logging.Filter):
    """PII out of the message, the free-text extras and an exception's text (ids are left
    alone). `Redactor` returns a line without digits, "@" or number words after one scan, so
    an ordinary line costs next to nothing."""

    KEEP = frozenset({"call_id", "instance", "subject"})

    def __init__(self, redact: Callable[[str], str]) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.redact(record.getMessage()), None
        for key, value in _extras(record).items():
            if isinstance(value, str) and key not in self.KEEP:
                setattr(record, key, self.redact(value))
        if record.exc_info and not record.exc_text:  # "transfer failed: <the number>"
            record.exc_text = self.redact(_PLAIN.formatException(record.exc_info))
        return True


_PLAIN = logging.Formatter()


def _exception(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """The (redacted) exception text the filter left on the record, else a fresh one."""
    if record.exc_text:
        return record.exc_text
    return formatter.formatException(record.exc_info) if record.exc_info else ""


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class TextFormatter(logging.Formatter):
    """`time level service call_id=.. turn=.. message key=value ...`"""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        extras = _extras(record)
        call_id = extras.pop("call_id", "-")
        turn_id = extras.pop("turn_id", 0)
        ts = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = (
            f"{ts}.{int(record.msecs):03d} {record.levelname:<5} {self.service} "
            f"call_id={call_id} turn={turn_id} {record.getMessage()}"
        )
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        if record.exc_info:
            line += "\n" + _exception(self, record)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": record.created,
            "level": record.levelname,
            "service": self.service,
            "msg": record.getMessage(),
        }
        doc.update(_extras(record))
        if record.exc_info:
            doc["exc"] = _exception(self, record)
        return json.dumps(doc, default=str)


def setup_logging(service: str, level: str = "INFO", fmt: str = "text",
                  redact: Callable[[str], str] | None = None) -> None:
    """Configure the root logger once per process (`redact`: applied to every line)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter(service))
    handler.addFilter(_ContextFilter())
    if redact is not None:
        handler.addFilter(_RedactingFilter(redact))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("nats", "httpx", "openai", "aiohttp.access", "faster_whisper"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
