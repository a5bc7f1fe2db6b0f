"""The committed AsyncAPI document and its rendering are what the registry and the protos
give now (regenerate: python -m voxbus_common.asyncapi), and they say what the bus does."""

from __future__ import annotations

from pathlib import Path

import yaml

from voxbus_common import registry
from voxbus_common.asyncapi import document, dump, proto_comments, render_markdown

ROOT = Path(__file__).resolve().parents[2]
PROTO = ROOT / "proto" / "voxbus" / "v1"


def test_the_committed_document_and_page_have_not_drifted() -> None:
    doc = document(PROTO)
    assert (ROOT / "docs" / "asyncapi.yaml").read_text() == dump(doc), \
        "docs/asyncapi.yaml is stale: python -m voxbus_common.asyncapi"
    assert (ROOT / "docs" / "bus.md").read_text() == render_markdown(doc), \
        "docs/bus.md is stale: python -m voxbus_common.asyncapi"


def test_every_row_is_a_channel_with_its_senders_and_receivers() -> None:
    doc = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
    assert doc["asyncapi"] == "3.0.0"
    for row in registry.ROWS:
        channel = doc["channels"][row.name]
        assert channel["address"] == row.pattern
        for role in row.publishers:
            assert doc["operations"][f"{role}_send_{row.name}"]["action"] == "send"
        for role in row.consumers:
            operation = doc["operations"][f"{role}_receive_{row.name}"]
            assert operation["channel"] == {"$ref": f"#/channels/{row.name}"}
            assert ("reply" in operation) == (row.reply is not None)


def test_payload_schemas_follow_the_protobuf_fields() -> None:
    schemas = document(PROTO)["components"]["schemas"]
    delta = schemas["voxbus.v1.TokenDelta"]["properties"]
    assert delta["toolsCalled"]["type"] == "array"  # repeated string
    assert delta["meta"] == {"$ref": "#/components/schemas/voxbus.v1.Meta"}
    assert schemas["voxbus.v1.AudioFrame"]["properties"]["pcm"]["contentEncoding"] == "base64"
    assert schemas["voxbus.v1.VadEvent.Kind"]["type"] == "string"  # an enum, by name
    assert "STREAM_CLOSED" in schemas["voxbus.v1.VadEvent.Kind"]["enum"]


def test_field_comments_come_from_the_proto_files() -> None:
    comments = proto_comments(PROTO)
    assert comments["AudioChunk.last"] == "last chunk of this clause"
    assert comments["TokenDelta.tools_called"].startswith("with done")
