"""Checks a tool call's arguments against the tool's JSON schema before anything runs, so a
small model's mistake (a word where a number belongs, a missing field, an unknown option)
comes back to it as one clear sentence it can correct, and never reaches a backend."""

from __future__ import annotations

import json
import re
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

MAX_RESULT_CHARS = 1500  # what any tool returns is read by a small model: keep it short
MAX_SHOWN = 40  # characters of a bad value quoted back to the model


class BadArguments(ValueError):
    """The message is what the model reads (it starts with "error:")."""


def parse_arguments(raw: str) -> dict[str, Any]:
    try:
        args = json.loads(raw or "{}")
    except ValueError:
        raise BadArguments("error: the arguments were not valid JSON; send a JSON object"
                           ) from None
    if not isinstance(args, dict):
        raise BadArguments("error: the arguments must be a JSON object")
    return args


FROM_CALLER = "x-from-caller"  # a parameter whose value the caller must have said


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


class ArgumentCheck:
    """One tool's validator, compiled once."""

    def __init__(self, schema: dict[str, Any]) -> None:
        props = schema.get("properties") or {}
        self._from_caller = [k for k, v in props.items()
                             if isinstance(v, dict) and v.get(FROM_CALLER)]
        try:
            Draft202012Validator.check_schema(schema)
            self._validator: Draft202012Validator | None = Draft202012Validator(schema)
        except SchemaError:
            self._validator = None  # a server's odd schema: pass arguments through

    def check(self, args: dict[str, Any]) -> None:
        if self._validator is None:
            return
        errors = sorted(self._validator.iter_errors(args), key=lambda e: list(e.path))
        if not errors:
            return
        raise BadArguments("error: " + "; ".join(_say(e) for e in errors[:3]))

    def check_heard(self, args: dict[str, Any], heard: str) -> None:
        """Arguments marked x-from-caller (a name for a booking) must be words the caller
        said in this call: a small model otherwise books for "John Doe"."""
        said = _words(heard)
        for key in self._from_caller:
            value = _words(str(args.get(key, "")))
            if value and not value <= said:
                raise BadArguments(f"error: the caller has not said the {key} "
                                   f"{str(args.get(key))[:MAX_SHOWN]!r}: ask them for it")


def _say(error: Any) -> str:
    where = ".".join(str(p) for p in error.path)
    kind = str(error.validator)
    if kind == "required":
        return f"missing argument {str(error.message).split(chr(39))[1]!r}"
    if kind == "additionalProperties":
        return "unknown argument(s): " + str(error.message).split("(")[-1].rstrip(")")
    value = json.dumps(error.instance, default=str)
    shown = value if len(value) <= MAX_SHOWN else value[:MAX_SHOWN] + "…"
    if kind == "type":
        return f"argument {where!r} must be of type {error.validator_value}, not {shown}"
    if kind == "enum":
        options = ", ".join(map(str, error.validator_value))
        return f"argument {where!r} must be one of: {options}"
    return f"argument {where!r} ({shown}) is invalid: {kind} {error.validator_value}"
