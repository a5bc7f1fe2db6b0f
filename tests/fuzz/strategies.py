"""Hypothesis strategies shared by the fuzz suites: JSON-like values, protocol-shaped
documents (valid messages, then mutated), carrier payloads, and protobuf messages and wire
bytes built from the generated descriptors."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

# -- JSON ---------------------------------------------------------------------------------------

JSON_SCALARS: st.SearchStrategy[Any] = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)  # json.dumps writes NaN/Infinity,
    | st.text(max_size=24))                            # which json.loads accepts


def json_values(keys: Sequence[str] = (), leaves: st.SearchStrategy[Any] | None = None,
                max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any JSON value; object keys often come from `keys` (a protocol's vocabulary)."""
    key = st.sampled_from(list(keys)) | st.text(max_size=8) if keys else st.text(max_size=8)
    base = JSON_SCALARS if leaves is None else JSON_SCALARS | leaves
    return st.recursive(base, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(key, inner, max_size=5), max_leaves=max_leaves)


@st.composite
def mutated(draw: st.DrawFn, doc: st.SearchStrategy[dict[str, Any]],
            noise: st.SearchStrategy[Any], keys: Sequence[str]) -> dict[str, Any]:
    """A valid message with a few random edits: a key dropped, a value replaced with noise
    or a known key added, anywhere in the document. Zero edits half of the time."""
    out: dict[str, Any] = draw(doc)
    for _ in range(draw(st.integers(0, 3)) if draw(st.booleans()) else 0):
        target: Any = out
        while True:  # walk down to a random nested object
            children = [v for v in target.values() if isinstance(v, dict)]
            if not children or not draw(st.booleans()):
                break
            target = draw(st.sampled_from(children))
        if target and draw(st.booleans()):
            target.pop(draw(st.sampled_from(list(target))), None)
        else:
            target[draw(st.sampled_from(list(keys)) | st.text(max_size=8))] = draw(noise)
    return out


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def payloads(max_size: int = 400) -> st.SearchStrategy[str]:
    """Base64 audio payloads, mostly valid, some broken (bad padding, alphabet, empty)."""
    valid = st.binary(min_size=1, max_size=max_size).map(b64)
    broken = (st.text(max_size=40) | valid.map(lambda s: s[:-1] + "*" if s else "=")
              | valid.map(lambda s: s.rstrip("=") + "===") | st.just("") | st.just("===="))
    return st.one_of(valid, valid, broken)


def nested_json(depth: int) -> str:
    return "[" * depth + "]" * depth


@st.composite
def text_frames(draw: st.DrawFn, docs: st.SearchStrategy[dict[str, Any]]) -> str:
    """A text frame: the JSON of a (mutated) document, or text that is not quite JSON."""
    doc = draw(docs)
    text = json.dumps(doc)
    choice = draw(st.integers(0, 9))  # (Hypothesis favours 0: the plain JSON)
    if choice == 6:
        return text[: draw(st.integers(0, len(text)))]  # truncated
    if choice == 7:
        return draw(st.text(max_size=60))
    if choice == 8:
        return json.dumps(draw(json_values()))  # valid JSON, maybe not an object
    if choice == 9:
        return nested_json(draw(st.sampled_from([50, 900, 2000, 100_000])))
    return text


# -- protobuf -----------------------------------------------------------------------------------

F = FieldDescriptor
_INTS: dict[int, st.SearchStrategy[int]] = {
    F.CPPTYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    F.CPPTYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    F.CPPTYPE_UINT32: st.integers(0, 2**32 - 1),
    F.CPPTYPE_UINT64: st.integers(0, 2**64 - 1),
}


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    cpp = field.cpp_type
    if cpp in _INTS:
        return _INTS[cpp]
    if cpp == F.CPPTYPE_BOOL:
        return st.booleans()
    if cpp == F.CPPTYPE_FLOAT:
        return st.floats(width=32)
    if cpp == F.CPPTYPE_DOUBLE:
        return st.floats()
    if cpp == F.CPPTYPE_ENUM:  # proto3 enums are open: unknown numbers are kept
        assert field.enum_type is not None
        known = [v.number for v in field.enum_type.values]
        return st.sampled_from(known) | st.integers(-(2**31), 2**31 - 1)
    if field.type == F.TYPE_BYTES:
        return st.binary(max_size=64)
    return st.text(max_size=40)


def proto_messages(desc: Any, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of `desc`'s type with random fields set (one member per oneof at most)."""
    cls = message_factory.GetMessageClass(desc)

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        msg = cls()
        chosen = {o.name: draw(st.sampled_from([None, *o.fields])) for o in desc.oneofs}
        for fd in desc.fields:
            oneof = fd.containing_oneof
            if oneof is not None and chosen[oneof.name] is not fd:
                continue
            if oneof is None and not draw(st.booleans()):
                continue
            _set_field(draw, msg, fd, depth)
        return msg

    return build()


def _set_field(draw: st.DrawFn, msg: Message, fd: FieldDescriptor, depth: int) -> None:
    sub = fd.message_type
    target = getattr(msg, fd.name)
    if sub is not None and sub.GetOptions().map_entry:
        key_fd, value_fd = sub.fields_by_name["key"], sub.fields_by_name["value"]
        for key in draw(st.lists(_scalar(key_fd), max_size=3)):
            if value_fd.message_type is None:
                target[key] = draw(_scalar(value_fd))
            elif depth < 3:
                target[key].CopyFrom(draw(proto_messages(value_fd.message_type, depth + 1)))
    elif fd.is_repeated:
        if sub is None:
            target.extend(draw(st.lists(_scalar(fd), max_size=3)))
        elif depth < 3:
            for item in draw(st.lists(proto_messages(sub, depth + 1), max_size=2)):
                target.add().CopyFrom(item)
    elif sub is not None:
        if depth < 3:
            target.CopyFrom(draw(proto_messages(sub, depth + 1)))
        else:
            target.SetInParent()
    else:
        setattr(msg, fd.name, draw(_scalar(fd)))


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@st.composite
def wire_bytes(draw: st.DrawFn, desc: Any, depth: int = 0) -> bytes:
    """Protobuf wire format aimed at `desc`: its field numbers (and others) with random wire
    types, over-long varints, bad lengths, nested submessages, and a random truncation."""
    fields: list[FieldDescriptor] = list(desc.fields) if desc is not None else []
    out = bytearray()
    for _ in range(draw(st.integers(0, 6))):
        fd: FieldDescriptor | None = None
        known = draw(st.integers(0, 3)) > 0  # mostly the type's own field numbers
        if fields and known:
            fd = draw(st.sampled_from(fields))
        number = fd.number if fd is not None else draw(st.integers(0, 2**29))
        wire = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7]))
        out += varint((number << 3) | wire)
        if wire == 0:
            out += varint(draw(st.integers(0, 2**70)))
        elif wire == 1:
            out += draw(st.binary(min_size=8, max_size=8))
        elif wire == 5:
            out += draw(st.binary(min_size=4, max_size=4))
        elif wire == 2:
            sub = fd.message_type if fd is not None else None
            if sub is not None and depth < 3 and draw(st.booleans()):
                body = draw(wire_bytes(sub, depth + 1))
            else:
                body = draw(st.binary(max_size=32)) if draw(st.booleans()) else (
                    draw(st.text(max_size=16)).encode())
            length = len(body) + draw(st.sampled_from([0, 0, 0, -1, 1, 1000]))
            out += varint(max(length, 0)) + body
    data = bytes(out)
    if draw(st.integers(0, 7)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return data


def pick(strategies: Sequence[st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    return st.one_of(*strategies)


def keyed(mapper: Callable[[str], str], doc: Any) -> Any:
    """`doc` with every object key passed through `mapper` (camelCase -> snake_case)."""
    if isinstance(doc, dict):
        return {mapper(k): keyed(mapper, v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [keyed(mapper, v) for v in doc]
    return doc
