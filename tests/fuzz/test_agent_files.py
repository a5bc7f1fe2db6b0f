"""Agent files and routes from arbitrary text and arbitrary YAML structures: an Agent (or a
Router) or an AgentError/RouteError whose message starts with the file's name, never another
exception; a valid agent's routes match any transcript or keypad entry without error."""

from __future__ import annotations

import copy
import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzz.budget import examples
from tests.fuzz.strategies import mutated
from voxbus_common.agent import Agent, AgentError, parse_agent
from voxbus_common.routes import RouteError, Router, load_router, parse_routes

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "agents" / "restaurant" / "agent.yaml"
EXAMPLE_TEXT = EXAMPLE.read_text()
SOURCE = str(EXAMPLE)  # its knowledge folder exists, so valid variants parse

AGENT_KEYS = ["name", "instructions", "greeting", "language", "voice", "knowledge", "tools",
              "routes", "memory", "redaction", "idle", "end_call", "lookup", "transfer_call",
              "targets", "description", "webhooks", "url", "method", "parameters", "type",
              "properties", "timeout_s", "max_steps", "filler", "after_ms", "text",
              "context_messages", "remember_callers", "caller_retention_days",
              "reprompt_after_s", "hangup_after_s", "keywords", "regex", "digits", "say",
              "action", "target"]
REGEXES = ["^(bye|goodbye)\\b", "(?i)bye", "(?x) bye # comment", "a)(b", "(", "[", "\\",
           "a{2,3}", "(?P<n>x)(?P=n)", "(a)\\1", "", "*", "\\bhours?\\b", "(?s).", "a|", "|"]
yaml_scalars = (st.none() | st.booleans() | st.integers(-(2**66), 2**66) | st.floats()
                | st.text(max_size=20) | st.dates().map(datetime.date.isoformat)
                | st.sampled_from([*REGEXES, "end_call", "transfer_call", "all", "none",
                                   "card", "en-GB", "http://x", "1#", "+15550100"]))
yaml_keys = st.sampled_from(AGENT_KEYS) | st.text(max_size=8) | st.integers(-3, 3) | st.none()
yaml_values = st.recursive(yaml_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(yaml_keys, inner, max_size=5), max_leaves=15)


def check_agent(text: str) -> Agent | None:
    try:
        agent = parse_agent(text, SOURCE)
    except AgentError as exc:
        assert str(exc).startswith(SOURCE + ":"), str(exc)
        return None
    assert isinstance(agent, Agent) and agent.name and agent.instructions
    return agent


@examples(300)
@given(st.text(max_size=300))
@example("[" * 2000)  # nesting: a RecursionError escaped before the fix
@example("routes:\n  - {name: a, say: b, regex: '(?i)bye'}\nname: n\ninstructions: i\n")
def test_any_text(text: str) -> None:
    check_agent(text)


@st.composite
def edited(draw: st.DrawFn, text: str) -> str:
    """The example agent with a few characters deleted, replaced or inserted."""
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 6))
        text = text[:at] + draw(st.sampled_from(["", ":", "-", " ", "\n", "'", "[", "{", "&a",
                                                 "*a", "!!python/object", "\t", "\0"])
                                | st.text(max_size=4)) + text[at + cut:]
    return text


@examples(200)
@given(edited(EXAMPLE_TEXT))
def test_edited_example(text: str) -> None:
    check_agent(text)


EXAMPLE_DOC: dict[str, Any] = yaml.safe_load(EXAMPLE_TEXT)


@examples(250)
@given(mutated(st.builds(lambda: copy.deepcopy(EXAMPLE_DOC)), yaml_values, AGENT_KEYS)
       | st.dictionaries(yaml_keys, yaml_values, max_size=8) | yaml_values)
def test_any_structure(doc: Any) -> None:
    agent = check_agent(yaml.safe_dump(doc, allow_unicode=True))
    if agent is not None:  # a valid agent's routes work on anything a caller says or keys
        router = parse_routes({"routes": agent.routes}, SOURCE)
        router.match("hello when are you open")
        router.match_digits("1#")


def test_the_example_still_parses() -> None:
    assert check_agent(EXAMPLE_TEXT) is not None


# -- routes -------------------------------------------------------------------------------------

route_keys = st.sampled_from(["name", "keywords", "regex", "digits", "say", "action", "target"])
routes = st.fixed_dictionaries(
    {"name": st.sampled_from(["hours", "", " x "]) | yaml_scalars,
     "say": st.sampled_from(["We are open.", ""]) | yaml_scalars},
    optional={"keywords": st.lists(st.text(max_size=12), max_size=3) | yaml_scalars,
              "regex": st.sampled_from(REGEXES) | yaml_scalars,
              "digits": st.sampled_from(["1", "12#", "*", "x", ""]) | yaml_scalars,
              "action": st.sampled_from(["", "end_call", "transfer_call", "dance"]),
              "target": st.sampled_from(["", "+15550100", "sip:a@b"]) | yaml_scalars})
route_docs = st.one_of(
    st.fixed_dictionaries({"routes": st.lists(
        mutated(routes, yaml_values, ["name", "say", "regex", "keywords"])
        | st.dictionaries(yaml_keys, yaml_values, max_size=4) | yaml_scalars, max_size=4)}),
    yaml_values)


@examples(500)
@given(route_docs, st.text(max_size=12), st.text("0123456789*#x", max_size=4))
@example({"routes": [{"name": "a", "say": "b", 1: "c"}]}, "", "")  # TypeError before the fix
@example({"routes": [{"name": "a", "say": "b", "regex": "(?i)bye"}]}, "", "")  # re.error
def test_parse_routes(doc: Any, spoken: str, digits: str) -> None:
    try:
        router = parse_routes(doc, "r.yaml")
    except RouteError as exc:
        assert str(exc).startswith("r.yaml")
        return
    assert isinstance(router, Router)
    route = router.match(spoken)  # (texts stay short: a route's regex may backtrack)
    assert route is None or route in router.routes
    route = router.match_digits(digits)
    assert route is None or route.digits == digits


def test_load_router_deep_nesting(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text("routes: " + "[" * 5000)
    with pytest.raises(RouteError, match=r"routes\.yaml"):
        load_router(str(path))
