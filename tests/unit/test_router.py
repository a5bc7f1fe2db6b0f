"""Routes: matching spoken text and keypad digits, and located errors for bad files."""

from pathlib import Path

import pytest

from voxbus_common.routes import RouteError, load_router, parse_routes

ROUTES = {"routes": [
    {"name": "hours", "keywords": ["opening hours", "when are you open"], "digits": "1",
     "say": "We are open from noon to ten."},
    {"name": "bye", "regex": r"^(bye|goodbye)\b", "say": "Goodbye.", "action": "end_call"},
]}


def test_keywords_regex_and_digits() -> None:
    router = parse_routes(ROUTES, "test")
    hit = router.match("What are your OPENING  hours, please?")
    assert hit is not None and hit.name == "hours"
    assert router.match("Goodbye then!") is not None
    assert router.match("I said goodbye") is None  # the regex is anchored
    assert router.match("I'd like a table for two") is None
    digits = router.match_digits("1")
    assert digits is not None and digits.name == "hours"
    assert router.match_digits("2") is None


def test_keywords_match_whole_words_only() -> None:
    router = parse_routes({"routes": [{"name": "op", "keywords": ["operator"],
                                       "say": "Connecting you."}]}, "t")
    assert router.match("operator please") is not None
    assert router.match("cooperators unite") is None


@pytest.mark.parametrize("route, words", [
    ({"name": "x", "say": "y"}, "give keywords, regex or digits"),
    ({"name": "x", "keywords": ["a"]}, "'name' and 'say' are required"),
    ({"name": "x", "say": "y", "regex": "("}, "bad regex"),
    ({"name": "x", "say": "y", "digits": "1a"}, "keypad keys only"),
    ({"name": "x", "say": "y", "keywords": ["a"], "action": "explode"}, "not one of end_call"),
    ({"name": "x", "say": "y", "keywords": ["a"], "colour": "red"}, "unknown field"),
])
def test_errors_name_the_route(route: dict[str, object], words: str) -> None:
    with pytest.raises(RouteError, match=r"routes\[1\]") as err:
        parse_routes({"routes": [ROUTES["routes"][0], route]}, "f.yaml")
    assert words in str(err.value)


def test_files(tmp_path: Path) -> None:
    good = tmp_path / "routes.yaml"
    good.write_text("routes:\n  - {name: bye, keywords: [bye], say: Goodbye.}\n")
    assert load_router(str(good)).match("bye") is not None
    assert load_router("").match("bye") is None
    bad = tmp_path / "bad.yaml"
    bad.write_text("routes: [\n")
    with pytest.raises(RouteError, match="not valid YAML"):
        load_router(str(bad))
    with pytest.raises(RouteError, match="cannot read"):
        load_router(str(tmp_path / "missing.yaml"))


def test_transfer_route_needs_a_target() -> None:
    router = parse_routes({"routes": [{"name": "op", "keywords": ["operator"],
                                       "say": "Connecting you.", "action": "transfer_call",
                                       "target": "+15550100"}]}, "t")
    route = router.match("operator please")
    assert route is not None and (route.action, route.target) == ("transfer_call", "+15550100")
    with pytest.raises(RouteError, match=r"routes\[0\] \(op\): 'target' goes with"):
        parse_routes({"routes": [{"name": "op", "keywords": ["operator"], "say": "x",
                                  "action": "transfer_call"}]}, "t")
    with pytest.raises(RouteError, match="'target' goes with action transfer_call"):
        parse_routes({"routes": [{"name": "op", "digits": "0", "say": "x", "target": "1"}]}, "t")
