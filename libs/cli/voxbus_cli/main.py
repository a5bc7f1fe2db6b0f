"""`voxbus` command line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="voxbus: real-time voice agents over NATS JetStream.")

STATE_DIR = Path(os.environ.get("VOXBUS_STATE_DIR", ".voxbus"))  # (voxbus_cli.state)


def _add_subcommands() -> None:
    from voxbus_cli.calls import calls_app

    app.add_typer(calls_app, name="calls")


_add_subcommands()
DEFAULT_URL = "ws://127.0.0.1:8765/v1/pcm"


@app.command()
def run(
    port: int = typer.Option(8765, help="gateway port"),
    nats_url: str = typer.Option("", envvar="NATS_URL", help="use this NATS instead of embedded"),
    audiosocket_port: int = typer.Option(9092, help="Asterisk AudioSocket TCP port (0 = off)"),
    control_port: int = typer.Option(50051, help="gRPC control API port (0 = off)"),
    sip_port: int = typer.Option(5060, help="SIP (UDP and TCP) port for trunks and phones "
                                           "(0 = off; docs/sip.md)"),
    agent: Path | None = typer.Option(None, "--agent", envvar="VOXBUS_AGENT_FILE",
                                      help="agent file (YAML, docs/agents.md)"),
    nats_cluster: int = typer.Option(0, "--nats-cluster", min=0, max=7,
                                     help="embedded NATS as a cluster of this many nodes "
                                          "(3: JetStream with 3 replicas; docs/cluster.md)"),
) -> None:
    """Start NATS (embedded), the local LLM server and the five services; Ctrl-C stops all.

    Closed by default: the embedded NATS serves one user per service with its permissions,
    the control API wants a token (a fresh admin token unless VOXBUS_CONTROL_* are set),
    and both are kept only in the owner-only run.json the other commands read."""
    from voxbus_cli.embedded import EmbeddedError
    from voxbus_cli.stack import Stack
    from voxbus_cli.state import clear_running, write_running
    from voxbus_common.agent import AgentError, load_agent
    from voxbus_common.tokens import MediaTokens, new_key_spec

    agent_name = "settings only (no agent file)"
    if agent is not None:
        try:  # every service reads the file; a bad one is reported once, here, located
            agent_name = load_agent(str(agent)).name
        except AgentError as exc:
            typer.echo(f"bad agent file:\n{exc}", err=True)
            raise typer.Exit(2) from None

    stack = Stack(workdir=STATE_DIR, gateway_port=port, nats_url=nats_url,
                  deps_log_dir=STATE_DIR / "logs", control_port=control_port,
                  secure=not nats_url, nats_cluster=0 if nats_url else nats_cluster)
    keys = os.environ.get("VOXBUS_MEDIA_TOKEN_KEYS") or new_key_spec("dev")
    stack.env["VOXBUS_MEDIA_TOKEN_KEYS"] = keys
    stack.env["VOXBUS_AUDIOSOCKET_PORT"] = str(audiosocket_port)
    stack.env["VOXBUS_SIP_PORT"] = str(sip_port)
    if agent is not None:
        stack.env["VOXBUS_AGENT_FILE"] = str(agent.resolve())
    token = MediaTokens(keys).issue(subject="local", ttl_s=12 * 3600)
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    # SIGINT explicitly too: a shell starting us in the background leaves SIGINT ignored,
    # and Ctrl-C to our process group then stopped only the children (which we restarted)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    typer.echo("starting voxbus (embedded NATS, llama.cpp server, 5 services)...")
    try:
        stack.start()
        stack.wait_ready()
    except (EmbeddedError, KeyboardInterrupt) as exc:
        stack.stop()
        typer.echo(f"voxbus failed to start: {exc}", err=True)
        raise typer.Exit(1) from None
    run_file = write_running(STATE_DIR, {
        "gateway_url": stack.gateway_url, "nats_url": stack.nats_url, "token": token,
        "llm_base_url": stack.llm_base_url, "pid": os.getpid(),
        "control": stack.control_target if control_port else "",
        "control_token": stack.control_token, "nats_admin": stack.credentials.get("admin", {})})
    http = f"http://127.0.0.1:{port}"
    ws = f"ws://127.0.0.1:{port}"
    typer.echo(f"\nvoxbus is up.\n  agent:    {agent_name}\n"
               f"  browser:  {http}/?token={token}\n"
               f"  raw PCM16 WebSocket:   {stack.gateway_url}?token=<token>\n"
               f"  Twilio Media Streams:  {ws}/v1/twilio   (TwiML webhook: POST {http}"
               f"/v1/twilio/voice)\n"
               f"  other carriers:        {ws}/v1/{{telnyx,exotel,plivo,teler,vonage,asterisk}}\n"
               f"  Asterisk AudioSocket:  tcp://127.0.0.1:{audiosocket_port}\n"
               f"  SIP (UDP/TCP):         sip:agent@127.0.0.1:{sip_port}   (docs/sip.md)\n"
               f"  media token (12 h):    {token}\n"
               f"  gRPC control API:      127.0.0.1:{control_port}   (voxbus calls list; "
               f"token in {run_file})\n"
               f"  Prometheus metrics:    " + ", ".join(
                   f"{name} :{port}/metrics" for name, port in stack.metrics_ports.items()) + "\n"
               f"  NATS: {stack.nats_url}"
               + (" (one user per service; admin in run.json)" if stack.credentials else "")
               + f"\n  LLM: {stack.llm_base_url or 'hosted'}\n"
               f"  NATS and llama.cpp logs: {STATE_DIR / 'logs'}\n"
               f"place a call in another shell:  .venv/bin/voxbus call YOUR.wav\n"
               f"Ctrl-C stops everything.")
    try:
        while not stopping:
            for name, proc in stack.service_procs.items():
                if proc.poll() is not None and not stopping:
                    typer.echo(f"service {name} exited ({proc.returncode}); restarting", err=True)
                    stack.start_service(name)
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    typer.echo("stopping voxbus...")
    stack.stop()
    clear_running(STATE_DIR)


def _running_stack() -> tuple[str, str]:
    """(gateway URL, media token) of the stack `voxbus run` started, if any (found from
    any directory: voxbus_cli.state)."""
    from voxbus_cli.state import find_running

    doc = find_running()
    return str(doc.get("gateway_url") or DEFAULT_URL), str(doc.get("token") or "")


@app.command()
def call(
    audio: Path = typer.Argument(..., help="WAV (or any libsndfile format) to speak"),
    url: str = typer.Option("", help="gateway PCM WebSocket URL (default: the running stack)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    out: Path | None = typer.Option(None, "--out", help="save the agent's reply as WAV"),
    timeout: float = typer.Option(90.0, help="seconds to wait for the agent after speaking"),
    token: str = typer.Option("", envvar="VOXBUS_MEDIA_TOKEN", help="media token"),
    talk_over: bool = typer.Option(False, "--talk-over",
                                   help="speak at once, over the greeting (default: hear it out)"),
) -> None:
    """Speak AUDIO to the agent in real time and print the transcript, reply and latency.

    Voice-to-voice is reported for the answer to AUDIO only: gateway-measured (from the
    end of speech as the gateway heard it) and caller-side (from the clip's last voiced
    20 ms frame to the answer's first audio here)."""
    from voxbus_cli.caller import CallerError, load_wav, place_call, save_wav

    try:
        pcm = load_wav(audio)
        running_url, running_token = _running_stack()
        result = asyncio.run(place_call(url or running_url, pcm, timeout_s=timeout,
                                        token=token or (running_token if not url else ""),
                                        wait_for_greeting=not talk_over))
    except CallerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if out is not None:
        save_wav(out, bytes(result.reply_pcm))
    summary = result.summary()
    if out is not None:
        summary["out"] = str(out)
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(f"caller said: {summary['caller_text']}")
        typer.echo(f"agent said:  {summary['agent_text']}")
        caller_side = summary["caller_voice_to_voice_ms"]
        for stage, ms in [*summary["latency_ms"].items(),
                          ("voice_to_voice, caller side", caller_side)]:
            typer.echo(f"  {stage:<42} {'-' if ms is None else f'{ms:8.1f} ms'}")
        typer.echo(f"reply audio: {summary['reply_audio_seconds']} s"
                   + (f" saved to {out}" if out else ""))
        for err in summary["errors"]:
            typer.echo(f"error from the call: {err}", err=True)
    if not result.turns:
        typer.echo("error: the agent did not answer", err=True)
        raise typer.Exit(4)



@app.command()
def load(
    calls: int = typer.Option(10, "--calls", min=1, help="concurrent synthetic callers"),
    duration: float = typer.Option(30.0, "--duration", min=1.0,
                                   help="seconds each caller keeps talking after the ramp"),
    audio: Path = typer.Option(Path("speech"), "--audio",
                               help="folder of WAV clips the callers speak in turn"),
    url: str = typer.Option("", help="gateway PCM WebSocket URL (default: the running stack)"),
    ramp: float = typer.Option(5.0, help="seconds over which the callers join"),
    report_to: Path = typer.Option(
        Path("bench/results") / f"load-{time.strftime('%Y%m%d-%H%M%S')}", "--report",
        help="report path prefix: writes PREFIX.json and PREFIX.png"),
    token: str = typer.Option("", envvar="VOXBUS_MEDIA_TOKEN", help="media token"),
) -> None:
    """Load-test a running gateway: N callers speaking real audio in real time."""
    from voxbus_cli.caller import CallerError
    from voxbus_cli.load import LoadConfig, LoadStats, load_clips, run_fast, run_load
    from voxbus_cli.load_report import progress_line, report, write_report

    try:
        clips = load_clips(audio)
    except CallerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    running_url, running_token = _running_stack()
    cfg = LoadConfig(url=url or running_url, calls=calls, duration_s=duration, clips=clips,
                     ramp_s=ramp, token=token or (running_token if not url else ""))
    stats = LoadStats()
    typer.echo(f"{calls} callers -> {cfg.url} for {ramp:.0f}+{duration:.0f} s "
               f"({len(clips)} clips)")
    if sys.stdout.isatty():
        from rich.live import Live

        with Live(progress_line(stats), refresh_per_second=2, transient=False) as live:
            run_fast(run_load(cfg, stats, on_tick=lambda s: live.update(progress_line(s))))
    else:  # logs and CI: a line every 5 s
        ticks = iter(range(1 << 30))
        run_fast(run_load(cfg, stats, on_tick=lambda s: None if next(ticks) % 10 else
                             typer.echo(progress_line(s))))
    doc = report(cfg, stats)
    json_path, png_path = write_report(doc, report_to)
    summary = doc["summary"]
    typer.echo(json.dumps(summary, indent=2))
    typer.echo(f"report: {json_path} and {png_path}")
    if stats.connected == 0:
        typer.echo(f"error: no call connected ({stats.errors[:1]})", err=True)
        raise typer.Exit(3)
    if summary["turns"] == 0:
        typer.echo("error: the agent answered no turn", err=True)
        raise typer.Exit(4)


@app.command("forget-caller")
def forget_caller_command(
    identity: str = typer.Argument(..., help="the caller's identity (phone number, user id)"),
    nats_url: str = typer.Option("", "--nats-url",
                                 help="NATS of the stack (default: the running stack)"),
) -> None:
    """Delete a caller's long-term memory and the stored sessions of their remembered calls."""
    from voxbus_cli.forget import ForgetError, forget_caller
    from voxbus_cli.state import find_running
    from voxbus_common.config import Settings

    running = {} if nats_url else find_running()
    url = nats_url or str(running.get("nats_url") or Settings().nats_url)
    try:
        reply = asyncio.run(forget_caller(url, identity, credentials=running.get("nats_admin")))
    except ForgetError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"long-term memory: {'deleted' if reply.memory_deleted else 'none stored'}")
    typer.echo(f"call sessions deleted: {reply.calls_deleted}")


@app.command("nats-config")
def nats_config_command(
    out: Path = typer.Option(..., "--out", help="write the nats-server configuration here"),
    tls_cert: str = typer.Option("", help="server certificate (PEM): clients must use TLS"),
    tls_key: str = typer.Option("", help="the server certificate's key (PEM)"),
    tls_ca: str = typer.Option("", help="CA that signs client certificates"),
    tls_verify: bool = typer.Option(False, help="require client certificates (mutual TLS)"),
    store_dir: str = typer.Option("", help="JetStream store directory (default: the server's)"),
    auth_only: bool = typer.Option(False, help="only the authorization and tls blocks (to "
                                               "include into another configuration)"),
    force: bool = typer.Option(False, help="overwrite FILE (every password changes)"),
) -> None:
    """One NATS user per service (+ admin) limited to its subjects; prints each one's env."""
    from voxbus_cli.nats_config import env_lines, new_passwords, render, write_secret
    from voxbus_common.nats_permissions import TlsFiles

    if out.exists() and not force:
        typer.echo(f"error: {out} exists (--force replaces it and every password)", err=True)
        raise typer.Exit(2)
    if bool(tls_cert) != bool(tls_key):
        typer.echo("error: --tls-cert and --tls-key go together", err=True)
        raise typer.Exit(2)
    tls = TlsFiles(tls_cert, tls_key, tls_ca, tls_verify) if tls_cert else None
    users = new_passwords()
    write_secret(out, render(users, tls, store_dir, auth_only))
    typer.echo(f"# wrote {out} (mode 0600); give each service its own lines:\n")
    typer.echo(env_lines(users, tls is not None))


deploy_app = typer.Typer(add_completion=False, no_args_is_help=True,
                         help="Inspect a voxbus deployment on Kubernetes (the Helm chart).")
app.add_typer(deploy_app, name="deploy")


@deploy_app.command("status")
def deploy_status_command(
    namespace: str = typer.Option("", "--namespace", "-n",
                                  help="namespace (default: the kubeconfig context's)"),
    release: str = typer.Option("", "--release",
                                help="Helm release (default: every voxbus release found)"),
    kubeconfig: Path | None = typer.Option(None, "--kubeconfig",
                                           help="kubeconfig file (default: KUBECONFIG, ~/.kube)"),
    context: str = typer.Option("", "--context", help="kubeconfig context (default: current)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Rollout, autoscaling and pods of each voxbus service in a Kubernetes namespace."""
    from voxbus_cli.deploy_kube import KubeError, read_status
    from voxbus_cli.deploy_render import render

    try:
        status = read_status(kubeconfig, context or None, namespace or None, release or None)
    except KubeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(status.to_dict(), indent=2))
    else:
        from rich.console import Console

        Console().print(render(status))
