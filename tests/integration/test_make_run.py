"""`voxbus run --agent` (what `make run` starts): comes up with the example agent, greets and
answers a call placed from another directory, is closed to a local process without
credentials (bus and control API), and Ctrl-C leaves no process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import grpc
import nats

from tests.integration.conftest import SPEECH, words
from voxbus.v1 import control_pb2 as pb
from voxbus.v1.control_pb2_grpc import ControlStub
from voxbus_cli.embedded import free_port

AGENT = Path(__file__).resolve().parents[2] / "agents" / "restaurant" / "agent.yaml"  # make run's


def sip_options(port: int) -> str:
    """The status line of the answer to a SIP OPTIONS ping."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(30)
        s.sendto(b"OPTIONS sip:agent@127.0.0.1 SIP/2.0\r\n"
                 b"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKping\r\nFrom: <sip:t@x>;tag=1\r\n"
                 b"To: <sip:agent@127.0.0.1>\r\nCall-ID: ping\r\nCSeq: 1 OPTIONS\r\n"
                 b"Content-Length: 0\r\n\r\n", ("127.0.0.1", port))
        return s.recv(4096).decode().split("\r\n")[0]


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def closed_to_strangers(running: dict[str, str]) -> tuple[str, str]:
    """What a local process without credentials gets from the bus and the control API."""
    try:
        nc = await nats.connect(running["nats_url"], connect_timeout=5, allow_reconnect=False,
                                max_reconnect_attempts=1)
        await nc.close()
        bus = "connected"
    except Exception as exc:
        bus = "refused" if "authorization" in str(exc).lower() else f"error: {exc}"
    async with grpc.aio.insecure_channel(running["control"]) as channel:
        try:
            await ControlStub(channel).ListCalls(pb.ListCallsRequest())
            control = "OK"
        except grpc.aio.AioRpcError as exc:
            control = exc.code().name
    return bus, control


def test_run_serves_a_call_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    # the smallest real model keeps this test quick; the default model's calls are what
    # bench/tasks.py measures
    env = dict(os.environ, VOXBUS_STATE_DIR=str(tmp_path / "state"),
               XDG_STATE_HOME=str(tmp_path / "xdg"), VOXBUS_EMBEDDED_MODEL="smollm2-135m")
    for key in [k for k in env if k == "NATS_URL" or k.startswith(("VOXBUS_NATS_",
                                                                   "VOXBUS_CONTROL_"))]:
        env.pop(key)
    # the other commands find the stack from any directory (through the user's state folder)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env_elsewhere = {k: v for k, v in env.items() if k != "VOXBUS_STATE_DIR"}
    port, sip_port = free_port(), free_port()
    launcher = subprocess.Popen(
        [sys.executable, "-m", "voxbus_cli", "run", "--port", str(port),
         "--audiosocket-port", str(free_port()), "--control-port", str(free_port()),
         "--sip-port", str(sip_port),
         "--agent", str(AGENT)], env=env,
        stdout=subprocess.PIPE, stderr=(tmp_path / "services.log").open("wb"), text=True,
        start_new_session=True)
    up = threading.Event()
    lines: list[str] = []

    def read() -> None:
        assert launcher.stdout is not None
        for line in launcher.stdout:
            lines.append(line)
            if "voxbus is up" in line:
                up.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert up.wait(timeout=240), "".join(lines)
        children = descendants(launcher.pid)
        assert len(children) >= 8, children  # nats, llama.cpp, the booking sidecar, 5 services
        booking = urllib.request.Request(
            "http://127.0.0.1:8790/availability", method="POST",
            data=json.dumps({"party_size": 2, "date": "friday", "time": "7pm"}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(booking, timeout=10) as resp:  # the agent's sidecar
            answer = json.load(resp)  # (a holiday may close that Friday: no assumption)
            assert answer["time"] == "19:00" and isinstance(answer["available"], bool)
        call = subprocess.run(
            [sys.executable, "-m", "voxbus_cli", "call", str(SPEECH / "arctic_aew_a0001.wav"),
             "--json"], env=env_elsewhere, cwd=elsewhere, capture_output=True, text=True,
            timeout=180)
        assert call.returncode == 0, call.stderr
        doc = json.loads(call.stdout)
        assert "danger trail" in words(doc["caller_text"])
        assert "Trattoria Aurora" in doc["agent_text"]  # the example agent's greeting
        assert any(t["user_text"] and t["agent_text"] for t in doc["turns"])  # and an answer
        assert sip_options(sip_port).startswith("SIP/2.0 200")  # the SIP edge is up too
        listed = subprocess.run([sys.executable, "-m", "voxbus_cli", "calls", "list"],
                                env=env_elsewhere, cwd=elsewhere, capture_output=True,
                                text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr  # with the admin token run.json holds
        run_file = tmp_path / "state" / "run.json"
        assert stat.S_IMODE(run_file.stat().st_mode) == 0o600  # tokens and passwords
        closed = asyncio.run(closed_to_strangers(json.loads(run_file.read_text())))
        assert closed == ("refused", "UNAUTHENTICATED"), closed
    finally:
        os.killpg(launcher.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        launcher.wait(timeout=60)
    leftovers = [pid for pid in children if alive(pid)]
    assert not leftovers, f"orphans after Ctrl-C: {leftovers}"
    printed = "".join(lines)
    assert f"ws://127.0.0.1:{port}/v1/pcm" in printed
    assert f"http://127.0.0.1:{port}/?token=" in printed  # a ready browser link
