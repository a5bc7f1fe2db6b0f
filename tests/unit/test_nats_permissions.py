"""The NATS permission contract as data: who may publish and subscribe what, that it covers
the whole subject table (a new subject or bucket without a grant fails here), the generated
server configuration, the client's connect options and `voxbus nats-config`."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from voxbus_cli.main import app
from voxbus_common import subjects as s
from voxbus_common.config import Settings
from voxbus_common.nats_connect import connect_options, redact_url, tls_context
from voxbus_common.nats_permissions import (
    ADMIN,
    CONTRACT,
    ROLES,
    SERVICES,
    TlsFiles,
    may_publish,
    may_subscribe,
    may_update_streams,
    permissions,
    render_nats_config,
    subject_matches,
)

C = "c42"


def publishers(subject: str) -> list[str]:
    return [r for r in ROLES if may_publish(r, subject)]


def subscribers(subject: str) -> list[str]:
    return [r for r in ROLES if may_subscribe(r, subject)]


def test_wildcards_follow_nats_rules() -> None:
    assert subject_matches("vb.call.*.ctl", "vb.call.c1.ctl")
    assert not subject_matches("vb.call.*.ctl", "vb.call.c1.in.audio")
    assert subject_matches("vb.call.*.out.>", "vb.call.c1.out.audio")
    assert not subject_matches("vb.call.*.out.>", "vb.call.c1.out")
    assert subject_matches("$JS.API.CONSUMER.CREATE.VB_LLM_WORK.llm-workers.vb.work.llm.*",
                           "$JS.API.CONSUMER.CREATE.VB_LLM_WORK.llm-workers.vb.work.llm.*")


def test_the_data_subjects_have_exactly_the_table_s_publishers() -> None:
    assert publishers(s.audio_in(C)) == ["gateway"]  # nobody else speaks as the caller
    assert publishers(s.control(C)) == ["gateway"]  # the single writer of call events
    assert publishers(s.vad(C)) == publishers(s.transcript(C)) == ["stt"]
    assert publishers(s.llm_out(C)) == ["llm"]
    assert publishers(s.audio_out(C)) == ["tts"]
    assert publishers(s.WORK_CALLS) == ["gateway", "stt"]  # announce; STT hands over
    assert publishers(s.work_llm(C)) == ["gateway"]
    assert publishers(s.work_tts(C)) == ["gateway", "llm"]  # fixed text; clauses
    assert publishers(s.RPC_MEMORY_CONTEXT) == ["llm"]
    assert publishers(s.RPC_LLM_SUMMARIZE) == ["memory"]
    assert publishers(s.RPC_MEMORY_FORGET) == [ADMIN]
    assert publishers(s.RPC_PING) == [ADMIN]


def test_core_subscriptions_follow_the_table() -> None:
    assert subscribers(s.call_out_all(C)) == ["gateway"]  # raw transcripts and tokens
    # caller audio: stt's consumer, and the subject itself while the stream stalls
    assert subscribers(s.audio_in(C)) == ["stt"]
    # work items straight off their subject while a queue elects; the pool's notices
    assert subscribers(s.work_llm(C)) == ["llm"]
    assert subscribers(s.work_tts(C)) == ["tts"]
    assert publishers(s.work_taken(s.TTS_POOL)) == ["tts"]
    # ... which the publishers hear too: a stored item nobody took goes direct (take_watch)
    assert subscribers(s.work_taken(s.LLM_POOL)) == ["gateway", "llm"]
    assert subscribers(s.work_taken(s.TTS_POOL)) == ["gateway", "llm", "tts"]
    # an item no stream stored goes straight to any replica of its kind
    assert subscribers(s.direct_work(s.work_llm(C))) == ["llm"]
    assert subscribers(s.direct_work(s.work_tts(C))) == ["tts"]
    assert publishers(s.direct_work(s.work_tts(C))) == ["gateway", "llm"]
    assert subscribers(s.control(C)) == ["stt", "llm", "tts"]  # memory: durable consumer
    assert subscribers(s.RPC_MEMORY_CONTEXT) == subscribers(s.RPC_MEMORY_FORGET) == ["memory"]
    assert subscribers(s.RPC_LLM_SUMMARIZE) == ["llm"]
    assert subscribers(s.RPC_PING) == list(SERVICES)
    assert subscribers(s.watch(C)) == ["gateway", ADMIN]


def test_buckets_and_stream_consumers_are_scoped() -> None:
    def readers(bucket: str) -> list[str]:
        return publishers(f"$JS.API.DIRECT.GET.KV_{bucket}.$KV.{bucket}.k")

    def writers(bucket: str) -> list[str]:
        return publishers(f"$KV.{bucket}.k")

    assert readers(s.CALLERS_BUCKET) == ["memory", ADMIN]
    assert writers(s.CALLERS_BUCKET) == writers(s.SESSIONS_BUCKET) == ["memory"]
    assert readers(s.SESSIONS_BUCKET) == ["gateway", "memory", ADMIN]
    assert writers(s.STT_BUCKET) == ["stt"] and writers(s.CALLS_BUCKET) == ["gateway"]
    assert publishers("$JS.API.CONSUMER.CREATE.VB_AUDIO") == ["stt", ADMIN]
    assert publishers("$JS.API.CONSUMER.MSG.NEXT.VB_EVENTS.memory-recorder") == ["memory",
                                                                                ADMIN]
    assert publishers("$JS.ACK.VB_TTS_WORK.tts-workers.1.2.3.4.5") == ["tts", ADMIN]


def test_every_subject_and_bucket_of_the_table_is_granted() -> None:
    table = [getattr(s, n) for n in dir(s) if n.isupper() and isinstance(getattr(s, n), str)]
    buckets = [v for n, v in vars(s).items() if n.endswith("_BUCKET")]
    assert buckets, "subjects.py lost its buckets?"
    for bucket in buckets:
        assert [r for r in SERVICES if may_publish(r, f"$JS.API.STREAM.INFO.KV_{bucket}")], \
            f"no service may use the bucket {bucket}: add it to nats_permissions.py"
    for subject in (v for v in table if v.startswith(f"{s.PREFIX}.") and ">" not in v):
        concrete = subject.replace("*", C)
        assert publishers(concrete), f"nobody may publish {subject}"
    for spec in s.stream_specs(30.0, 3600.0):
        for subject in spec.subjects:
            assert [r for r in SERVICES if may_publish(r, subject.replace("*", C))], subject
        assert [r for r in SERVICES if may_publish(r, f"$JS.API.STREAM.CREATE.{spec.name}")]


def test_streams_are_updated_by_the_managers_only() -> None:
    updaters = publishers("$JS.API.STREAM.UPDATE.VB_EVENTS")
    assert updaters == ["memory", ADMIN]
    assert [r for r in ROLES if may_update_streams(r)] == updaters
    assert may_update_streams("")  # no auth: every service applies the stream contract
    assert all(may_publish(r, "$JS.API.STREAM.CREATE.VB_AUDIO") for r in ROLES)
    assert not [r for r in ROLES if r != ADMIN and may_publish(r, "$JS.API.STREAM.DELETE.VB_AUDIO")]


def test_each_role_reads_its_own_replies_only() -> None:
    for role in ROLES:
        inboxes = [p for p in permissions(role).subscribe if p.startswith("_INBOX")]
        assert inboxes == [f"_INBOX_{role}.>"]
    assert not any(p.startswith("_INBOX") for r in ROLES for p in permissions(r).publish)
    assert all(CONTRACT[r].allow_responses for r in SERVICES)
    assert options_for("tts")["inbox_prefix"] == "_INBOX_tts"
    with pytest.raises(ValueError, match="unknown role"):
        permissions("root")


def options_for(user: str, **extra: str) -> dict[str, object]:
    return connect_options(Settings().model_copy(update={"nats_user": user, **extra}))


def test_connect_options_and_tls() -> None:
    assert options_for("") == {"inbox_prefix": "_INBOX"}
    opts = options_for("llm", nats_password="pw")
    assert (opts["user"], opts["password"]) == ("llm", "pw") and "tls" not in opts
    assert options_for("", nats_token="t")["token"] == "t"
    assert options_for("", nats_creds="/x.creds")["user_credentials"] == "/x.creds"
    assert tls_context(Settings().model_copy(update={"nats_url": "tls://nats:4222"}))
    assert "tls" in options_for("", nats_url="tls://nats:4222")


def test_urls_are_printed_without_credentials() -> None:
    assert redact_url("nats://gateway:s3cret@nats:4222") == "nats://nats:4222"
    assert redact_url("tls://a:b@n1:4222, nats://n2:4222") == "tls://n1:4222,nats://n2:4222"
    assert redact_url("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"


def test_the_server_configuration() -> None:
    text = render_nats_config({"gateway": "pw-1", "admin": "pw-2"},
                              TlsFiles("/tls/cert.pem", "/tls/key.pem", "/tls/ca.pem", True),
                              store_dir="/data")
    assert 'user: "gateway"' in text and 'password: "pw-1"' in text
    assert '"$JS.API.>"' in text  # quoted: `$` would start a variable
    assert 'store_dir: "/data"' in text and "verify: true" in text
    assert text.count("allow_responses: true") == 1  # the gateway; admin answers nothing
    with pytest.raises(ValueError, match="unknown role"):
        render_nats_config({"intruder": "pw"})


def test_the_cli_writes_a_secret_file_and_prints_each_role_s_env(tmp_path: Path) -> None:
    out = tmp_path / "nats.conf"
    result = CliRunner().invoke(app, ["nats-config", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    text = out.read_text()
    for role in ROLES:
        assert f"VOXBUS_NATS_USER={role}\n" in result.output
        password = result.output.split(f"VOXBUS_NATS_USER={role}\nVOXBUS_NATS_PASSWORD=")[1]
        assert f'password: "{password.split()[0]}"' in text
    again = CliRunner().invoke(app, ["nats-config", "--out", str(out)])
    assert again.exit_code == 2 and "--force" in again.output
    auth = tmp_path / "auth.conf"
    assert CliRunner().invoke(app, ["nats-config", "--out", str(auth), "--auth-only"]
                              ).exit_code == 0
    assert auth.read_text().startswith("authorization {")
