// voxbus browser caller: WebSocket PCM16 at 16 kHz both ways; the conversation as it
// happens (greeting, interim and final caller text, the agent's text as it is spoken with the
// part a barge-in cut marked, tool calls and routed answers); barge-in (the gateway sends
// "clear"); marks echoed once audio has played; a microphone level meter; a waterfall per turn.
"use strict";
const RATE = 16000;
const params = new URLSearchParams(location.search);
const state = { ws: null, ctx: null, playAt: 0, sources: [], partial: null, agent: null,
                decode: {}, tools: {} };
window.voxbusStats = { audioBytes: 0, turns: [], finals: [], events: 0, marks: 0, clears: 0,
                       greeting: "", tools: [], routed: [], micPeak: 0 };

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

function bubble(cls, who, turn) {
  // A message with a small "caller"/"agent" label; its text lives in the .text span.
  const div = add(cls, "");
  const label = document.createElement("span");
  label.className = "who";
  label.textContent = who;
  const text = document.createElement("span");
  text.className = "text";
  div.append(label, text);
  if (turn != null) div.dataset.turn = String(turn);
  return div;
}

function agentBubble(turn) {
  if (!state.agent || state.agent.dataset.turn !== String(turn)) {
    state.agent = bubble("agent", "agent", turn);
  }
  return state.agent.querySelector(".text");
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
  // Plain-language stages; "end of turn" and "STT" split the endpoint by the final's decode.
  const l = turn.latency_ms || {};
  const endpoint = l.end_of_speech_to_final_transcript;
  const decode = state.decode[turn.turn];
  const stt = endpoint == null || decode == null ? null : Math.min(decode, endpoint);
  const stages = [
    ["end of turn", endpoint == null ? null : endpoint - (stt || 0)],
    ["STT", stt],
    ["LLM first token", l.final_transcript_to_first_token],
    ["first audio", l.first_token_to_first_audio_chunk],
    ["playout", l.first_audio_chunk_to_first_audio_played],
  ];
  const total = l.voice_to_voice || stages.reduce((a, s) => a + Math.max(0, s[1] || 0), 0) || 1;
  const div = document.createElement("div");
  div.className = "waterfall";
  const ms = (v) => (v == null ? "–" : `${Math.round(v)} ms`);
  div.textContent = `turn ${turn.turn}: you heard the answer ${ms(l.voice_to_voice)} after ` +
    "you stopped — " + stages.map((s) => `${s[0]} ${ms(s[1])}`).join(", ");
  const bar = document.createElement("div");
  bar.className = "bar";
  stages.forEach((s, i) => {
    const span = document.createElement("span");
    span.className = "s" + i;
    span.style.width = `${(100 * Math.max(0, s[1] || 0)) / total}%`;
    span.title = `${s[0]}: ${ms(s[1])}`;
    bar.appendChild(span);
  });
  div.appendChild(bar);
  log.appendChild(div);
}

function onEvent(ev) {
  window.voxbusStats.events += 1;
  switch (ev.type) {
    case "call": $("status").textContent = `connected (${ev.call_id})`; break;
    case "greeting":
      if (ev.text) {
        agentBubble(ev.turn).textContent = ev.text;
        window.voxbusStats.greeting = ev.text;
      }
      break;
    case "transcript":
      if (!ev.final) {
        if (!state.partial) state.partial = bubble("caller partial", "caller (hearing…)");
        state.partial.querySelector(".text").textContent = ev.text;
      } else {
        if (state.partial) state.partial.remove();
        state.partial = null;
        bubble("caller", "caller", ev.turn).querySelector(".text").textContent = ev.text;
        if (ev.turn != null && ev.decode_ms != null) state.decode[ev.turn] = ev.decode_ms;
        window.voxbusStats.finals.push(ev.text);
      }
      break;
    case "agent_text": agentBubble(ev.turn).textContent += ev.delta; break;
    case "tool_call": {
      const div = add("tool", `calling ${ev.name}…`);
      (state.tools[ev.turn] = state.tools[ev.turn] || []).push(div);
      window.voxbusStats.tools.push(ev.name);
      break;
    }
    case "tools":
      for (const div of state.tools[ev.turn] || []) div.classList.add("done");
      if (!state.tools[ev.turn]) {
        for (const name of ev.tools) add("tool done", `called ${name}`);
        window.voxbusStats.tools.push(...ev.tools);
      }
      break;
    case "routed":
      add("tool done", `answered by the route "${ev.route}"`);
      window.voxbusStats.routed.push(ev.route);
      break;
    case "clear": clearPlayback(); break;
    case "mark": echoMark(ev.name); break;
    case "barge_in": if (ev.phase === "paused") add("sys", `barge-in (${ev.reaction_ms} ms)`); break;
    case "turn":
      window.voxbusStats.turns.push(ev);
      if (ev.agent_text && (!state.agent || state.agent.dataset.turn !== String(ev.turn))) {
        agentBubble(ev.turn).textContent = ev.agent_text;  // a routed or canned answer
      }
      if (ev.interrupted && state.agent && state.agent.dataset.turn === String(ev.turn)) {
        const text = state.agent.querySelector(".text");
        text.textContent = ev.heard_text + " ";
        const cut = document.createElement("span");
        cut.className = "cut";
        cut.title = "not heard: you interrupted";
        cut.textContent = ev.agent_text.slice(ev.heard_text.length);
        text.appendChild(cut);
      }
      waterfall(ev);
      break;
    case "error": add("sys", "error: " + ev.message); break;
    case "ended": $("status").textContent = "ended: " + ev.reason; break;
    case "transfer": add("sys", `transferring you to ${ev.target}`); break;
    default: break;
  }
}

function meter(ctx, source) {
  // The microphone level (RMS, dB scale) as a bar: is the browser hearing you?
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 512;
  source.connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  const bar = document.querySelector("#meter span");
  const tick = () => {
    if (ctx.state === "closed") { bar.style.width = "0"; return; }
    analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const v of buf) sum += v * v;
    const rms = Math.sqrt(sum / buf.length);
    const level = Math.max(0, Math.min(1, (20 * Math.log10(rms + 1e-9) + 60) / 60));
    bar.style.width = `${Math.round(level * 100)}%`;
    window.voxbusStats.micPeak = Math.max(window.voxbusStats.micPeak, level);
    setTimeout(tick, 50);
  };
  tick();
}

async function start() {
  const ctx = new AudioContext({ sampleRate: RATE });
  state.ctx = ctx;
  const mic = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
  });
  await ctx.audioWorklet.addModule("static/capture-worklet.js");
  const node = new AudioWorkletNode(ctx, "capture");
  const source = ctx.createMediaStreamSource(mic);
  source.connect(node);
  meter(ctx, source);
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
