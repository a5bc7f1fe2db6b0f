"""The agent file: the example validates, settings are overlaid, bad files get located errors."""

from pathlib import Path

import pytest

from voxbus_common.agent import AgentError, load_agent, parse_agent
from voxbus_common.config import Settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "agents" / "restaurant" / "agent.yaml"
MINIMAL = "name: Test line\ninstructions: Be brief.\n"


def test_example_agent_validates_and_overlays_settings() -> None:
    agent = load_agent(str(EXAMPLE))
    assert agent.tools.enabled() and agent.tools.lookup and agent.tools.end_call
    folder = agent.knowledge_dir()
    assert folder is not None and (folder / "menu.md").is_file()
    settings = agent.overlay(Settings())
    assert settings.system_prompt.startswith("You answer the phone for Trattoria Aurora")
    assert "Trattoria Aurora" in settings.greeting
    assert settings.redact_pii == "card,ssn,email"  # phone numbers kept for bookings
    assert Path(settings.routes_file).resolve() == EXAMPLE.resolve()
    assert settings.caller_ttl_s == 90 * 24 * 3600.0
    assert settings.idle_hangup_s == 40


def test_minimal_agent_leaves_other_settings_alone() -> None:
    base = Settings(tts_voice="joe", idle_hangup_s=99, redact_pii="all")
    settings = parse_agent(MINIMAL, "a.yaml").overlay(base)
    assert settings.system_prompt == "Be brief." and settings.greeting == ""
    assert (settings.tts_voice, settings.idle_hangup_s, settings.redact_pii) == ("joe", 99, "all")
    assert settings.routes_file == ""


@pytest.mark.parametrize(("text", "expected"), [
    (MINIMAL + "voise: amy\n", "a.yaml:3: voise: Extra inputs are not permitted"),
    (MINIMAL + "tools:\n  webhooks:\n    - name: hook\n      description: d\n"
     "      url: ftp://example.com\n", "a.yaml:7: tools.webhooks[0].url"),
    (MINIMAL + "tools:\n  webhooks:\n    - {name: lookup, description: d, url: 'http://x'}\n",
     "a.yaml:5: tools.webhooks[0].name: Value error, 'lookup' is a built-in tool name"),
    (MINIMAL + "tools:\n  webhooks:\n    - {name: a, description: d, url: 'http://x',"
     " parameters: {type: string}}\n", "tools.webhooks[0].parameters: Value error, must be"),
    (MINIMAL + "routes:\n  - {name: ok, say: hi, digits: '1'}\n  - {name: x, say: y, "
     "regex: '('}\n", "a.yaml:5: routes[1] (x): bad regex"),
    (MINIMAL + "tools: {lookup: true}\n", "a.yaml:3: tools.lookup: needs a knowledge folder"),
    (MINIMAL + "knowledge: nowhere\n", "a.yaml:3: knowledge:"),
    (MINIMAL + "memory:\n  context_messages: -1\n", "a.yaml:4: memory.context_messages"),
    ("instructions: hi\n", "a.yaml:1: name: Field required"),
    ("name: [x\n", "a.yaml:2: not valid YAML"),
    ("- just a list\n", "a.yaml: an agent file is a mapping"),
])
def test_bad_files_get_located_errors(text: str, expected: str) -> None:
    with pytest.raises(AgentError) as caught:
        parse_agent(text, "a.yaml")
    assert expected in str(caught.value)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(AgentError, match="cannot read the agent file"):
        load_agent(str(tmp_path / "missing.yaml"))


def test_relative_knowledge_folder_is_next_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    path = tmp_path / "agent.yaml"
    path.write_text(MINIMAL + "knowledge: docs\ntools: {lookup: true}\n")
    assert load_agent(str(path)).knowledge_dir() == tmp_path / "docs"
