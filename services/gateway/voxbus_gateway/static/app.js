// voxbus browser caller: WebSocket PCM16 at 16 kHz both ways, live transcript, barge-in
// (the gateway sends "clear"), marks echoed once audio has played, a latency waterfall.
"use strict";
const RATE = 16000;
const params = new URLSearchParams(location.search);
const state = { ws: null, ctx: null, playAt: 0, sources: [], partial: null, agent: null };
window.voxbusStats = { audioBytes: 0, turns: [], finals: [], events: 0, marks: 0, clears: 0 };

const $ = (id) => document.getElementById(id);
const log = $("log");

function add(cls, text) {
  const div = document.createElement("div");
  div.className = "msg " + cls;
  div.textContent = text;
  log.appendChild(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

function wsUrl() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const base = location.pathname.replace(/\/[^/]*$/, "");
  const q = new URLSearchParams({ sample_rate: String(RATE), marks: "1" });
  if (params.get("token")) q.set("token", params.get("token"));
  return `${proto}//${location.host}${base}/v1/browser?${q}`;
}

function play(buf) {
  const ctx = state.ctx;
  const pcm = new Int16Array(buf);
  const audio = ctx.createBuffer(1, pcm.length, RATE);
  const ch = audio.getChannelData(0);
  for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
  const src = ctx.createBufferSource();
  src.buffer = audio;
  src.connect(ctx.destination);
  state.playAt = Math.max(state.playAt, ctx.currentTime + 0.03);
  src.start(state.playAt);
  state.playAt += audio.duration;
  state.sources.push(src);
  src.onended = () => { state.sources = state.sources.filter((s) => s !== src); };
  window.voxbusStats.audioBytes += buf.byteLength;
}

function clearPlayback() {
  for (const s of state.sources) { try { s.stop(); } catch (e) { /* already stopped */ } }
  state.sources = [];
  state.playAt = 0;
  window.voxbusStats.clears += 1;
}

function echoMark(name) {
  // The mark follows the audio queued so far: echo it when that audio has played.
  const delay = Math.max(0, state.playAt - state.ctx.currentTime) * 1000;
  setTimeout(() => {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      state.ws.send(JSON.stringify({ type: "mark", name }));
      window.voxbusStats.marks += 1;
    }
  }, delay);
}

function waterfall(turn) {
  const l = turn.latency_ms || {};
  const stages = [
    ["endpoint+STT", l.end_of_speech_to_final_transcript],
    ["LLM first token", l.final_transcript_to_first_token],
    ["first clause+TTS", l.first_token_to_first_audio_chunk],
    ["playout", l.first_audio_chunk_to_first_audio_played],
  ];
  const total = l.voice_to_voice || stages.reduce((a, s) => a + (s[1] || 0), 0) || 1;
  const div = document.createElement("div");
  div.className = "waterfall";
  div.textContent = `turn ${turn.turn}: voice-to-voice ${Math.round(total)} ms — ` +
    stages.map((s) => `${s[0]} ${s[1] == null ? "–" : Math.round(s[1])}`).join(" · ");
  const bar = document.createElement("div");
  bar.className = "bar";
  stages.forEach((s, i) => {
    const span = document.createElement("span");
    span.className = "s" + i;
    span.style.width = `${(100 * (s[1] || 0)) / total}%`;
    span.title = `${s[0]}: ${s[1]} ms`;
    bar.appendChild(span);
  });
  div.appendChild(bar);
  log.appendChild(div);
}

function onEvent(ev) {
  window.voxbusStats.events += 1;
  switch (ev.type) {
    case "call": $("status").textContent = `connected (${ev.call_id})`; break;
    case "transcript":
      if (!ev.final) {
        if (!state.partial) state.partial = add("caller partial", "");
        state.partial.textContent = ev.text;
      } else {
        if (state.partial) state.partial.remove();
        state.partial = null;
        add("caller", ev.text);
        window.voxbusStats.finals.push(ev.text);
      }
      break;
    case "agent_text":
      if (!state.agent || state.agent.dataset.turn !== String(ev.turn)) {
        state.agent = add("agent", "");
        state.agent.dataset.turn = String(ev.turn);
      }
      state.agent.textContent += ev.delta;
      break;
    case "clear": clearPlayback(); break;
    case "mark": echoMark(ev.name); break;
    case "barge_in": if (ev.phase === "paused") add("sys", `barge-in (${ev.reaction_ms} ms)`); break;
    case "turn":
      window.voxbusStats.turns.push(ev);
      if (ev.interrupted && state.agent && state.agent.dataset.turn === String(ev.turn)) {
        state.agent.textContent = ev.heard_text + " ";
        const cut = document.createElement("span");
        cut.className = "cut";
        cut.textContent = ev.agent_text.slice(ev.heard_text.length);
        state.agent.appendChild(cut);
      }
      waterfall(ev);
      break;
    case "error": add("sys", "error: " + ev.message); break;
    case "ended": $("status").textContent = "ended: " + ev.reason; break;
    default: break;
  }
}

async function start() {
  const ctx = new AudioContext({ sampleRate: RATE });
  state.ctx = ctx;
  const mic = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
  });
  await ctx.audioWorklet.addModule("static/capture-worklet.js");
  const node = new AudioWorkletNode(ctx, "capture");
  ctx.createMediaStreamSource(mic).connect(node);
  const ws = new WebSocket(wsUrl());
  ws.binaryType = "arraybuffer";
  state.ws = ws;
  node.port.onmessage = (e) => { if (ws.readyState === WebSocket.OPEN) ws.send(e.data); };
  ws.onmessage = (e) => (typeof e.data === "string" ? onEvent(JSON.parse(e.data)) : play(e.data));
  ws.onclose = () => {
    mic.getTracks().forEach((t) => t.stop());
    ctx.close();
    $("call").textContent = "Call";
    $("call").classList.remove("live");
    state.ws = null;
  };
  $("call").textContent = "Hang up";
  $("call").classList.add("live");
}

$("call").onclick = async () => {
  if (state.ws) { state.ws.send(JSON.stringify({ type: "stop" })); return; }
  try { await start(); } catch (err) { add("sys", "could not start: " + err); }
};
