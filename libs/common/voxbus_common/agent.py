"""The agent file: one YAML document that defines an agent (docs/agents.md).

Every service reads the same file (`VOXBUS_AGENT_FILE`, a ConfigMap in Kubernetes) and takes
what it needs: the gateway the greeting, routes and idle policy; the LLM service the
instructions and tools; TTS the voice; memory the memory and redaction policy. Plain
settings become overrides of the environment (`Agent.overlay`); the rest is read from the
`Agent` object. Errors name the file, the line and the field.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from voxbus_common.routes import RouteError, parse_routes

if TYPE_CHECKING:
    from voxbus_common.config import Settings

DAY_S = 24 * 3600.0
TOOL_NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
BUILTIN_TOOLS = ("end_call", "transfer_call", "lookup")


class AgentError(ValueError):
    """An agent file that cannot be used; the message locates the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IdlePolicy(_Strict):
    reprompt_after_s: float | None = Field(default=None, gt=0)
    reprompt_text: str | None = None
    hangup_after_s: float | None = Field(default=None, gt=0)


class MemoryPolicy(_Strict):
    context_messages: int | None = Field(default=None, ge=0, le=200)
    summarize_after_tokens: int | None = Field(default=None, ge=0)
    keep_recent_messages: int | None = Field(default=None, ge=0, le=100)
    remember_callers: bool | None = None
    caller_retention_days: float | None = Field(default=None, gt=0)
    session_retention_days: float | None = Field(default=None, gt=0)


class Filler(_Strict):
    """What the agent says when a tool keeps the caller waiting."""

    after_ms: int = Field(default=700, ge=0)
    text: str = "One moment."
    allow_interruptions: bool = True  # false: the caller hears the filler out


class TransferTool(_Strict):
    description: str = "Transfer the caller to a person."
    targets: dict[str, str] = Field(min_length=1)  # name the model picks -> number or URI


class Webhook(_Strict):
    """An HTTP tool: the model's arguments are sent as JSON, the response body is the result."""

    name: str = Field(pattern=TOOL_NAME)
    description: str = Field(min_length=1)
    url: str = Field(pattern=r"^https?://")
    method: Literal["POST", "GET"] = "POST"
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object",
                                                                "properties": {}})
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    auth_header_env: str = ""  # env var holding the secret; sent as Authorization
    auth_scheme: str = "Bearer"
    # a read-only tool may run while the caller may still be speaking (a preemptive turn);
    # one with side effects (booking, payment) waits for the final transcript
    read_only: bool = False

    @field_validator("parameters")
    @classmethod
    def _json_schema_object(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("type") != "object" or not isinstance(value.get("properties", {}), dict):
            raise ValueError("must be a JSON schema with type: object and properties")
        return value

    @field_validator("name")
    @classmethod
    def _not_builtin(cls, value: str) -> str:
        if value in BUILTIN_TOOLS:
            raise ValueError(f"{value!r} is a built-in tool name")
        return value


class PythonTool(_Strict):
    """A Python function the model may call, by import path "module:function" (the agent's
    folder is searched first). Its name, docstring and typed parameters are what the model
    sees, unless overridden here."""

    function: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    name: str | None = Field(default=None, pattern=TOOL_NAME)
    description: str | None = None
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    read_only: bool = False  # true: may run on a partial transcript (no side effects)


class McpServer(_Strict):
    """An MCP server whose tools the agent offers: a command (stdio; run in the agent's
    folder) or a URL (streamable HTTP), called through the official `mcp` SDK."""

    name: str = Field(pattern=TOOL_NAME)
    command: list[str] | None = Field(default=None, min_length=1)
    url: str | None = Field(default=None, pattern=r"^https?://")
    env: dict[str, str] = Field(default_factory=dict)  # extra environment for a command
    tools: list[str] | None = None  # only these of the server's tools (default: all)
    read_only: bool | list[str] = False  # tools without side effects (true: all)
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    max_restarts: int = Field(default=3, ge=0, le=100)  # in a row; then the server is off

    @model_validator(mode="after")
    def _one_transport(self) -> McpServer:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of command (stdio) or url (streamable HTTP)")
        return self

    def is_read_only(self, tool: str) -> bool:
        return self.read_only if isinstance(self.read_only, bool) else tool in self.read_only


class Sidecar(_Strict):
    """A local process the agent's tools talk to (a stand-in for your booking system, an MCP
    server over HTTP): `voxbus run` starts it before the services and stops it after. In
    `command`, {python} is voxbus's interpreter and {state} the run's state folder."""

    name: str = Field(pattern=TOOL_NAME)
    command: list[str] = Field(min_length=1)
    ready_url: str | None = Field(default=None, pattern=r"^https?://")  # answers when up
    env: dict[str, str] = Field(default_factory=dict)


class Greeting(_Strict):
    """The greeting as a mapping, to say whether the caller may talk over it."""

    text: str = Field(min_length=1)
    allow_interruptions: bool = True


class TurnTaking(_Strict):
    """When the agent may answer (docs/conversation.md#end-of-turn)."""

    end_of_turn: Literal["model", "vad"] | None = None
    completion_threshold: float | None = Field(default=None, gt=0, lt=1)
    ask_after_ms: int | None = Field(default=None, ge=32, le=2000)
    min_silence_ms: int | None = Field(default=None, ge=0, le=5000)
    max_hold_ms: int | None = Field(default=None, ge=100, le=10000)
    hold_ms: int | None = Field(default=None, ge=100, le=10000)
    vad_hangover_ms: int | None = Field(default=None, ge=64, le=5000)
    barge_in_confirm_ms: int | None = Field(default=None, ge=100, le=5000)


class Tools(_Strict):
    end_call: bool = False
    transfer_call: TransferTool | None = None
    lookup: bool = False  # search the agent's knowledge folder
    webhooks: list[Webhook] = Field(default_factory=list)
    python: list[PythonTool] = Field(default_factory=list)
    mcp: list[McpServer] = Field(default_factory=list)
    max_steps: int = Field(default=3, ge=1, le=10)  # model calls per turn, tool rounds incl.
    filler: Filler = Field(default_factory=Filler)

    @model_validator(mode="after")
    def _unique(self) -> Tools:
        names = [w.name for w in self.webhooks] + [
            p.name or p.function.rsplit(":", 1)[1] for p in self.python]
        dupes = sorted({n for n in names if names.count(n) > 1 or n in BUILTIN_TOOLS})
        if dupes:
            raise ValueError(f"duplicate tool name(s): {', '.join(dupes)}")
        servers = [m.name for m in self.mcp]
        if len(set(servers)) != len(servers):
            raise ValueError("duplicate MCP server name(s)")
        return self

    def enabled(self) -> bool:
        return bool(self.end_call or self.transfer_call or self.lookup or self.webhooks
                    or self.python or self.mcp)


class Agent(_Strict):
    name: str = Field(min_length=1)
    instructions: str = Field(min_length=1)  # the system prompt
    # said when the call starts; "" = the caller speaks first. A mapping
    # {text, allow_interruptions} chooses whether the caller may talk over it
    greeting: str | Greeting = ""
    language: str = Field(default="en", pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")  # BCP 47
    voice: str | None = None
    knowledge: str | None = None  # folder of .md/.txt, relative to the agent file
    tools: Tools = Field(default_factory=Tools)
    routes: list[dict[str, Any]] = Field(default_factory=list)  # docs/routing.md
    memory: MemoryPolicy = Field(default_factory=MemoryPolicy)
    redaction: list[Literal["card", "ssn", "email", "phone"]] | Literal["none", "all"] | None = None
    idle: IdlePolicy = Field(default_factory=IdlePolicy)
    turn_taking: TurnTaking = Field(default_factory=TurnTaking)
    sidecars: list[Sidecar] = Field(default_factory=list)  # started by `voxbus run`
    source: str = Field(default="", exclude=True)  # the file this agent came from

    def knowledge_dir(self) -> Path | None:
        if not self.knowledge:
            return None
        path = Path(self.knowledge)
        return path if path.is_absolute() else Path(self.source).parent / path

    def overlay(self, settings: Settings) -> Settings:
        """`settings` with the agent's choices on top (the agent file wins over env)."""
        greeting = (self.greeting if isinstance(self.greeting, Greeting)
                    else Greeting(text=self.greeting) if self.greeting.strip() else None)
        update: dict[str, Any] = {
            "system_prompt": self.instructions.strip(),
            "greeting": greeting.text.strip() if greeting else "",
            "greeting_allow_interruptions": greeting.allow_interruptions if greeting else True,
            "agent_language": self.language}
        if "-" in self.language:  # a locale (en-GB): cloud recognizers need one
            update["azure_speech_language"] = self.language
        if self.voice:  # the voice of whichever TTS provider is configured
            update["tts_voice"] = self.voice
            if settings.tts_provider in ("azure", "openai"):
                update[f"{settings.tts_provider}_tts_voice"] = self.voice
        if self.routes:
            update["routes_file"] = str(Path(self.source).resolve())  # routes live here
        if self.redaction is not None:
            update["redact_pii"] = (self.redaction if isinstance(self.redaction, str)
                                    else ",".join(self.redaction) or "none")
        idle, mem, turns = self.idle, self.memory, self.turn_taking
        pairs: list[tuple[str, Any]] = [
            ("end_of_turn", turns.end_of_turn), ("eot_threshold", turns.completion_threshold),
            ("eot_ask_after_ms", turns.ask_after_ms), ("eot_max_hold_ms", turns.max_hold_ms),
            ("eot_hold_ms", turns.hold_ms), ("eot_min_silence_ms", turns.min_silence_ms),
            ("vad_hangover_ms", turns.vad_hangover_ms),
            ("barge_in_confirm_ms", turns.barge_in_confirm_ms),
            ("idle_reprompt_s", idle.reprompt_after_s), ("idle_reprompt_text", idle.reprompt_text),
            ("idle_hangup_s", idle.hangup_after_s),
            ("llm_context_messages", mem.context_messages),
            ("memory_summarize_tokens", mem.summarize_after_tokens),
            ("memory_keep_recent", mem.keep_recent_messages),
            ("caller_memory", mem.remember_callers),
            ("caller_ttl_s", None if mem.caller_retention_days is None
             else mem.caller_retention_days * DAY_S),
            ("session_ttl_s", None if mem.session_retention_days is None
             else mem.session_retention_days * DAY_S)]
        update.update({k: v for k, v in pairs if v is not None})
        return settings.model_copy(update=update)


def _line(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the YAML node at `loc` (the deepest one that exists)."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and (
                key < len(node.value)):
            node = node.value[key]
        else:
            break
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_agent(text: str, source: str) -> Agent:
    """Validate an agent document; raise AgentError with `file:line: field: problem`."""
    try:
        root = yaml.compose(text)
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise AgentError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except RecursionError:  # PyYAML recurses per nesting level: "[" * 1000 (fuzzing)
        raise AgentError(f"{source}: not valid YAML (nested too deeply)") from None
    if not isinstance(doc, dict):
        raise AgentError(f"{source}: an agent file is a mapping (name, instructions, ...)")
    try:
        agent = Agent.model_validate({**doc, "source": source})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not isinstance(p, str) or
                        not p.startswith(("literal[", "list[", "function-")))
            problems.append(f"{source}:{_line(root, loc)}: {_dotted(loc) or '(top)'}: "
                            f"{err['msg']}")
        raise AgentError("\n".join(problems)) from None
    try:
        parse_routes({"routes": agent.routes}, source)
    except RouteError as exc:
        match = re.search(r"routes\[(\d+)\]", str(exc))
        line = _line(root, ("routes", int(match.group(1)))) if match else None
        raise AgentError(str(exc).replace(f"{source}:", f"{source}:{line}:", 1)) from None
    folder = agent.knowledge_dir()
    if agent.tools.lookup and folder is None:
        raise AgentError(f"{source}:{_line(root, ('tools', 'lookup'))}: tools.lookup: "
                         "needs a knowledge folder (knowledge: ./docs)")
    if folder is not None and not folder.is_dir():
        raise AgentError(f"{source}:{_line(root, ('knowledge',))}: knowledge: "
                         f"{folder} is not a folder")
    return agent


@lru_cache(maxsize=4)
def load_agent(path: str) -> Agent:
    """The agent defined in `path`, read and validated once per process."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AgentError(f"{path}: cannot read the agent file ({exc})") from None
    return parse_agent(text, str(Path(path)))
