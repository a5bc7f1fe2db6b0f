"""An AsyncAPI 3 document of the whole bus, generated from the registry and the protobufs.

Channels are the registry's rows (registry.py), operations say which role sends and which
receives each, and every message's payload schema is derived from its protobuf descriptor,
with the field comments of `proto/voxbus/v1/*.proto`. The document is committed as
docs/asyncapi.yaml and rendered as docs/bus.md; tests/unit/test_asyncapi.py fails when
either drifts from the code. Regenerate with `python -m voxbus_common.asyncapi`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from voxbus_common.registry import CALL, ROWS, Row

CALL_ID = "the call id: one subject token, [A-Za-z0-9_-]{1,64}"
PROTOBUF = "application/x-protobuf"
_NUMBER = (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)
_INTEGER = (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_INT32,
            FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SINT64,
            FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_FIXED64,
            FieldDescriptor.TYPE_SFIXED32, FieldDescriptor.TYPE_SFIXED64)
_SCALARS: dict[int, dict[str, str]] = {
    **{t: {"type": "number"} for t in _NUMBER}, **{t: {"type": "integer"} for t in _INTEGER},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"}, FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}


# -- field comments from the .proto files -----------------------------------------------------

def proto_comments(proto_dir: Path) -> dict[str, str]:
    """`Message.field` (nested messages dotted) -> the field's trailing `//` comment."""
    out: dict[str, str] = {}
    for path in sorted(proto_dir.glob("*.proto")):
        stack: list[str] = []
        for line in path.read_text().splitlines():
            code, _, comment = line.partition("//")
            opened = re.match(r"\s*(message|enum|oneof)\s+(\w+)\s*\{", code)
            if opened:
                stack.append(opened.group(2) if opened.group(1) != "oneof" else "")
                continue
            field = re.match(r"\s*(?:repeated\s+)?[\w.<>, ]+\s+(\w+)\s*=\s*\d+", code)
            if field and stack and comment.strip():
                owner = ".".join(name for name in stack if name)
                out[f"{owner}.{field.group(1)}"] = comment.strip()
            stack = stack[:len(stack) - code.count("}")] if "}" in code else stack
    return out


# -- schemas ----------------------------------------------------------------------------------

def _schema_name(descriptor: Descriptor | EnumDescriptor) -> str:
    return descriptor.full_name


def _field_schema(field: FieldDescriptor, schemas: dict[str, Any],
                  comments: dict[str, str]) -> dict[str, Any]:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value = field.message_type.fields_by_name["value"]
        return {"type": "object",
                "additionalProperties": _single(value, schemas, comments)}
    single = _single(field, schemas, comments)
    if field.is_repeated:
        return {"type": "array", "items": single}
    return single


def _single(field: FieldDescriptor, schemas: dict[str, Any],
            comments: dict[str, str]) -> dict[str, Any]:
    if field.message_type is not None:
        _add_message(field.message_type, schemas, comments)
        return {"$ref": f"#/components/schemas/{_schema_name(field.message_type)}"}
    if field.enum_type is not None:
        name = _schema_name(field.enum_type)
        schemas.setdefault(name, {"type": "string",
                                  "enum": [v.name for v in field.enum_type.values]})
        return {"$ref": f"#/components/schemas/{name}"}
    return dict(_SCALARS[field.type])


def _add_message(descriptor: Descriptor, schemas: dict[str, Any],
                 comments: dict[str, str]) -> None:
    name = _schema_name(descriptor)
    if name in schemas:
        return
    schemas[name] = {}  # (placed first: a message may refer to itself)
    owner = descriptor.full_name.removeprefix(f"{descriptor.file.package}.")
    properties: dict[str, Any] = {}
    for field in descriptor.fields:
        schema = _field_schema(field, schemas, comments)
        note = comments.get(f"{owner}.{field.name}")
        if note:
            schema = {**schema, "description": note} if "$ref" not in schema else {
                "allOf": [schema], "description": note}
        properties[field.json_name] = schema
    schemas[name] = {"type": "object", "title": descriptor.name, "properties": properties}
    oneofs = [o for o in descriptor.oneofs if not o.name.startswith("_")]
    if oneofs:
        schemas[name]["description"] = "; ".join(
            f"at most one of {', '.join(f.json_name for f in o.fields)}" for o in oneofs)


# -- the document -----------------------------------------------------------------------------

def _message_ref(row: Row[Any], payload: type[Message] | None, messages: dict[str, Any],
                 schemas: dict[str, Any], comments: dict[str, str], suffix: str = "") -> str:
    """The components/messages key of a row's payload (or reply), added if new."""
    if payload is None:
        key = f"{row.name}{suffix}_json"
        messages.setdefault(key, {"name": key, "contentType": "application/json",
                                  "payload": {"type": "object"}})
        return key
    descriptor: Descriptor = payload.DESCRIPTOR  # type: ignore[assignment]
    _add_message(descriptor, schemas, comments)
    key = descriptor.name
    messages.setdefault(key, {
        "name": key, "title": descriptor.full_name, "contentType": PROTOBUF,
        "payload": {"$ref": f"#/components/schemas/{_schema_name(descriptor)}"}})
    return key


def document(proto_dir: Path) -> dict[str, Any]:
    comments = proto_comments(proto_dir)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for row in ROWS:
        key = _message_ref(row, row.payload, messages, schemas, comments)
        channel: dict[str, Any] = {
            "address": row.pattern,
            "description": "; ".join(filter(None, [row.about, row.delivery])),
            "messages": {key: {"$ref": f"#/components/messages/{key}"}},
        }
        if CALL in row.pattern:
            channel["parameters"] = {CALL.strip("{}"): {"description": CALL_ID}}
        if row.stream:
            channel["x-voxbus-stream"] = row.stream
        channels[row.name] = channel
        reply_key = ""
        if row.reply is not None:
            reply_key = _message_ref(row, row.reply, messages, schemas, comments, "_reply")
            channels[f"{row.name}_reply"] = {
                "address": None,  # the requester's inbox
                "description": f"the answer to {row.pattern}, on the requester's inbox",
                "messages": {reply_key: {"$ref": f"#/components/messages/{reply_key}"}}}
        for action, roles in (("send", row.publishers), ("receive", row.consumers)):
            for role in roles:
                operation: dict[str, Any] = {
                    "action": action, "channel": {"$ref": f"#/channels/{row.name}"},
                    "summary": f"{role} {'publishes' if action == 'send' else 'consumes'} "
                               f"{row.pattern}",
                    "x-voxbus-role": role}
                if reply_key and action == "receive":
                    operation["reply"] = {"channel": {"$ref": f"#/channels/{row.name}_reply"}}
                operations[f"{role}_{action}_{row.name}"] = operation
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "voxbus bus",
            "version": "1.0.0",
            "description": "Every subject the five voxbus services (and the admin CLI) use on "
                           "NATS, generated from libs/common/voxbus_common/registry.py and "
                           "proto/voxbus/v1. Payloads are protobuf unless marked JSON; the "
                           "schemas give their fields by JSON name.",
        },
        "defaultContentType": PROTOBUF,
        "servers": {"nats": {"host": "localhost:4222", "protocol": "nats",
                             "description": "nats-server with JetStream"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": dict(sorted(messages.items())),
                       "schemas": dict(sorted(schemas.items()))},
    }


def render_markdown(doc: dict[str, Any]) -> str:
    """docs/bus.md: the document as pages a reader scans."""
    out = ["# The bus, message by message",
           "",
           "Generated from [asyncapi.yaml](asyncapi.yaml) (`python -m voxbus_common.asyncapi`;",
           "the registry is `libs/common/voxbus_common/registry.py`). The subject table with",
           "delivery details is in [architecture.md](architecture.md#subjects).",
           "", "## Channels", ""]
    schemas = doc["components"]["schemas"]
    for name, channel in doc["channels"].items():
        if channel["address"] is None:
            continue
        keys = list(channel["messages"])
        senders = sorted({o["x-voxbus-role"] for o in doc["operations"].values()
                          if o["channel"]["$ref"].endswith(f"/{name}") and o["action"] == "send"})
        takers = sorted({o["x-voxbus-role"] for o in doc["operations"].values()
                         if o["channel"]["$ref"].endswith(f"/{name}")
                         and o["action"] == "receive"})
        out.append(f"- `{channel['address']}` ({name}): **{', '.join(keys)}**, "
                   f"{', '.join(senders)} → {', '.join(takers)}"
                   + (f"; stream {channel['x-voxbus-stream']}" if "x-voxbus-stream" in channel
                      else ""))
    out += ["", "## Messages", ""]
    for key, schema in schemas.items():
        if "properties" not in schema:
            out.append(f"### {key}\n\nOne of: {', '.join(schema.get('enum', []))}.\n")
            continue
        out.append(f"### {key}\n")
        if schema.get("description"):
            out.append(f"{schema['description']}\n")
        out.append("| field | type | about |\n|---|---|---|")
        for field, spec in schema["properties"].items():
            out.append(f"| `{field}` | {_type_text(spec)} | {spec.get('description', '')} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _type_text(spec: dict[str, Any]) -> str:
    if "allOf" in spec:
        return _type_text(spec["allOf"][0])
    if "$ref" in spec:
        return str(spec["$ref"]).rsplit("/", 1)[-1].removeprefix("voxbus.v1.")
    if spec.get("type") == "array":
        return f"list of {_type_text(spec['items'])}"
    if spec.get("contentEncoding") == "base64":
        return "bytes"
    if spec.get("type") == "object" and "additionalProperties" in spec:
        return f"map to {_type_text(spec['additionalProperties'])}"
    return str(spec.get("type", "object"))


def write(root: Path) -> list[Path]:
    """Regenerate docs/asyncapi.yaml and docs/bus.md under `root`; the files that changed."""
    doc = document(root / "proto" / "voxbus" / "v1")
    changed = []
    for path, text in ((root / "docs" / "asyncapi.yaml", dump(doc)),
                       (root / "docs" / "bus.md", render_markdown(doc))):
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            changed.append(path)
    return changed


def dump(doc: dict[str, Any]) -> str:
    import yaml

    header = "# Generated by `python -m voxbus_common.asyncapi` from the registry: do not edit.\n"
    return header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)


if __name__ == "__main__":
    changed = write(Path.cwd())
    print("updated: " + ", ".join(map(str, changed)) if changed else "docs up to date")
