"""Hybrid routing: rules that answer (and act) at once, without the LLM.

A route matches the caller's final transcript by keywords (whole words, any case) or a
regular expression, or a keypad entry by its digits; the agent then says the route's fixed
text straight through TTS, and may end or transfer the call after it. Everything else goes
to the LLM.

    routes:
      - name: hours
        keywords: ["opening hours", "when are you open"]
        digits: "1"
        say: "We are open from noon to ten, every day."
      - name: operator
        keywords: ["operator", "a real person"]
        say: "Connecting you to a person."
        action: transfer_call
        target: "+15550100100"
      - name: goodbye
        regex: "^(bye|goodbye)\\b"
        say: "Goodbye, thanks for calling."
        action: end_call
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

ACTIONS = ("", "end_call", "transfer_call")
FIELDS = {"name", "keywords", "regex", "digits", "say", "action", "target",
          "allow_interruptions"}


class RouteError(ValueError):
    """A routes file that cannot be used; the message names the file and the route."""


@dataclass(frozen=True)
class Route:
    name: str
    say: str
    action: str = ""
    pattern: re.Pattern[str] | None = None
    digits: str = ""
    target: str = ""  # transfer_call: where to (a number or SIP URI)
    allow_interruptions: bool = True  # false: the caller hears the answer out


class Router:
    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes

    def match(self, text: str) -> Route | None:
        """The first route whose keywords or regex match the transcript."""
        spoken = " ".join(re.findall(r"[a-z0-9']+", text.lower()))
        for route in self.routes:
            if route.pattern is not None and route.pattern.search(spoken):
                return route
        return None

    def match_digits(self, digits: str) -> Route | None:
        return next((r for r in self.routes if r.digits and r.digits == digits), None)


def _route(raw: Any, where: str) -> Route:
    if not isinstance(raw, dict):
        raise RouteError(f"{where}: a route is a mapping with name, say and a match")
    unknown = sorted(map(str, set(raw) - FIELDS))  # YAML keys may be numbers (fuzzing)
    if unknown:
        raise RouteError(f"{where}: unknown field(s) {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(FIELDS))})")
    name, say = str(raw.get("name", "")).strip(), str(raw.get("say", "")).strip()
    if not name or not say:
        raise RouteError(f"{where}: 'name' and 'say' are required")
    action = str(raw.get("action", "") or "")
    if action not in ACTIONS:
        raise RouteError(f"{where} ({name}): action {action!r} is not one of "
                         f"{', '.join(a for a in ACTIONS if a)}")
    target = str(raw.get("target", "") or "").strip()
    if (action == "transfer_call") != bool(target):
        raise RouteError(f"{where} ({name}): 'target' goes with action transfer_call, and "
                         "transfer_call needs one")
    parts: list[str] = []
    keywords = raw.get("keywords") or []
    if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
        raise RouteError(f"{where} ({name}): 'keywords' is a list of strings")
    parts += [r"\b" + r"\s+".join(map(re.escape, k.lower().split())) + r"\b"
              for k in keywords if k.strip()]
    if raw.get("regex"):
        try:
            re.compile(str(raw["regex"]))
        except re.error as exc:
            raise RouteError(f"{where} ({name}): bad regex: {exc}") from None
        parts.append(f"(?:{raw['regex']})")
    digits = str(raw.get("digits", "") or "")
    if digits and not re.fullmatch(r"[0-9*#]+", digits):
        raise RouteError(f"{where} ({name}): 'digits' holds keypad keys only (0-9 * #)")
    if not parts and not digits:
        raise RouteError(f"{where} ({name}): give keywords, regex or digits to match")
    try:
        pattern = re.compile("|".join(parts), re.IGNORECASE) if parts else None
    except re.error as exc:  # "(?i)bye" compiles alone, not after the keywords (fuzzing)
        raise RouteError(f"{where} ({name}): bad regex: {exc}") from None
    allow = raw.get("allow_interruptions", True)
    if not isinstance(allow, bool):
        raise RouteError(f"{where} ({name}): 'allow_interruptions' is true or false")
    return Route(name=name, say=say, action=action, pattern=pattern, digits=digits,
                 target=target, allow_interruptions=allow)


def parse_routes(doc: Any, source: str) -> Router:
    if doc is None:
        return Router([])
    if not isinstance(doc, dict) or not isinstance(doc.get("routes", []), list):
        raise RouteError(f"{source}: expected a mapping with a 'routes' list")
    routes = doc.get("routes", [])  # (doc["routes"] was a KeyError for `{}`: fuzzing)
    return Router([_route(r, f"{source}: routes[{i}]") for i, r in enumerate(routes)])


@lru_cache(maxsize=4)
def load_router(path: str) -> Router:
    """The routes of `path` ("" = no routes), read once per process."""
    if not path:
        return Router([])
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise RouteError(f"{path}: cannot read the routes file ({exc.strerror})") from None
    try:
        doc = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:  # PyYAML recurses per nesting level
        raise RouteError(f"{path}: not valid YAML ({exc})") from None
    return parse_routes(doc, path)
