/**
 * The customer's "Call CME Auto Sales" widget: POST /api/calls, then join the LiveKit room with
 * the returned token, publish the microphone and play Sarah. Every failure ends in a readable
 * message on the card, never in a broken page.
 */

import "./widget.css";

import { ApiError, apiRequest, type CallCreated } from "../shared/api";
import { byId } from "../shared/dom";
import { formatDuration } from "../shared/format";
import { describeError, joinRoom, type VoiceSession } from "../shared/voice";

type Phase = "idle" | "requesting" | "connecting" | "waiting" | "in_call" | "ended" | "failed" | "cooldown";

const card = byId("call-card");
const form = byId<HTMLFormElement>("call-form");
const nameInput = byId<HTMLInputElement>("customer-name");
const nameError = byId("name-error");
const callButton = byId<HTMLButtonElement>("call-button");
const callButtonLabel = byId("call-button-label");
const statusText = byId("call-status");
const timerEl = byId("call-timer");
const inCall = byId("in-call");
const muteButton = byId<HTMLButtonElement>("mute-button");
const hangupButton = byId<HTMLButtonElement>("hangup-button");
const enableAudio = byId<HTMLButtonElement>("enable-audio");
const message = byId("call-message");
const callRef = byId("call-ref");
const callIdEl = byId("call-id");
const audioContainer = byId("remote-audio");

let phase: Phase = "idle";
let session: VoiceSession | null = null;
let callStartedAt = 0;
let timer: number | undefined;
let cooldownTimer: number | undefined;
let muted = false;
let hangingUp = false;
let attempt = 0; // bumped by every new call and every hang-up: a stale connect knows it is stale
const agentsPresent = new Set<string>();

const STATUS: Record<Phase, string> = {
  idle: "Ready when you are",
  requesting: "Starting your call…",
  connecting: "Connecting audio…",
  waiting: "Waiting for Sarah to pick up…",
  in_call: "On the call with Sarah",
  ended: "Call ended",
  failed: "The call could not be completed",
  cooldown: "Please wait a moment",
};

function setPhase(next: Phase, status?: string): void {
  phase = next;
  card.dataset.state = next;
  statusText.textContent = status ?? STATUS[next];
  const busy = next === "requesting" || next === "connecting" || next === "waiting" || next === "in_call";
  form.hidden = busy;
  inCall.hidden = !(next === "connecting" || next === "waiting" || next === "in_call");
  muteButton.disabled = next !== "in_call" && next !== "waiting";
  callButton.disabled = next === "cooldown";
  nameInput.disabled = busy;
  callButtonLabel.textContent = next === "ended" || next === "failed" ? "Call again" : "Call CME Auto Sales";
  if (next === "in_call") startTimer();
  if (next !== "in_call") stopTimer(next === "ended");
  if (!busy) enableAudio.hidden = true;
}

function showMessage(text: string, kind: "error" | "info" | "warning" = "error"): void {
  message.textContent = text;
  message.dataset.kind = kind;
  message.hidden = false;
}

function clearMessage(): void {
  message.hidden = true;
  message.textContent = "";
  nameError.hidden = true;
  nameInput.removeAttribute("aria-invalid");
}

function startTimer(): void {
  if (timer !== undefined) return;
  callStartedAt = Date.now();
  timerEl.hidden = false;
  const tick = () => {
    timerEl.textContent = formatDuration((Date.now() - callStartedAt) / 1000);
  };
  tick();
  timer = window.setInterval(tick, 1000);
}

function stopTimer(keepShown: boolean): void {
  window.clearInterval(timer);
  timer = undefined;
  if (!keepShown || callStartedAt === 0) timerEl.hidden = true;
}

/** What the customer reads while a refusal's `Retry-After` runs down (never the server's words). */
const COOLDOWN_TEXT: Record<string, string> = {
  busy: "All our agents are busy right now.",
  at_capacity: "All our agents are busy right now.",
  too_many_calls: "You already have calls open from your network: please end one first.",
  waiting_share_used: "You already have a call waiting to be answered.",
};

function cooldown(seconds: number, code = ""): void {
  window.clearInterval(cooldownTimer);
  let left = Math.max(1, Math.ceil(seconds));
  setPhase("cooldown");
  const reason = COOLDOWN_TEXT[code] ?? "Too many calls from your network right now.";
  const render = () => {
    showMessage(`${reason} Please try again in ${left} s.`, "warning");
    callButtonLabel.textContent = `Try again in ${left} s`;
  };
  render();
  cooldownTimer = window.setInterval(() => {
    left -= 1;
    if (left <= 0) {
      window.clearInterval(cooldownTimer);
      clearMessage();
      setPhase("idle");
      return;
    }
    render();
  }, 1000);
}

async function startCall(): Promise<void> {
  if (phase === "requesting" || phase === "connecting" || phase === "waiting" || phase === "in_call") return;
  clearMessage();
  callRef.hidden = true;
  callStartedAt = 0;
  agentsPresent.clear();
  muted = false;
  muteButton.setAttribute("aria-pressed", "false");
  muteButton.textContent = "Mute";
  const name = nameInput.value.trim();
  const mine = ++attempt;
  setPhase("requesting");

  let call: CallCreated;
  try {
    call = await apiRequest<CallCreated>("POST", "/api/calls", { body: name ? { customer_name: name } : {} });
  } catch (err) {
    handleRequestError(err);
    return;
  }
  callIdEl.textContent = call.call_id;
  callRef.hidden = false;
  card.dataset.callId = call.call_id;
  setPhase("connecting");

  current = call;
  rejoins = 0;
  await connect(call, mine);
}

// Reasons after which the call is over for good; any other drop is retried with a fresh token.
const FINAL_REASONS = new Set(["CLIENT_INITIATED", "ROOM_DELETED", "PARTICIPANT_REMOVED", "DUPLICATE_IDENTITY", "ROOM_CLOSED"]);
const MAX_REJOINS = 3; // within the call's rejoin grace (30 s by default)
let current: CallCreated | null = null;
let rejoins = 0;

async function connect(call: CallCreated, mine: number): Promise<void> {
  try {
    session = await joinRoom({
      url: call.livekit_url,
      token: call.token,
      publishMicrophone: true,
      audioContainer,
      callbacks: {
        onParticipantJoined: (identity, isAgent) => {
          if (!isAgent) return;
          agentsPresent.add(identity);
          if (phase === "waiting" || phase === "connecting") setPhase("in_call");
        },
        onParticipantLeft: (identity, isAgent) => {
          if (!isAgent) return;
          agentsPresent.delete(identity);
          // The call brings a new agent (or a person) in: never a hang-up on the customer.
          if (agentsPresent.size === 0 && phase === "in_call") {
            setPhase("waiting", "One moment, reconnecting you to Sarah…");
          }
        },
        onReconnecting: () => statusText.textContent = "Connection lost, reconnecting…",
        onReconnected: () => statusText.textContent = STATUS[phase],
        onAudioBlocked: (blocked) => {
          enableAudio.hidden = !blocked;
        },
        onDisconnected: (reason) => onRoomClosed(reason),
      },
    });
  } catch (err) {
    if (mine !== attempt) return; // the customer hung up while we were connecting
    session = null;
    setPhase("failed");
    showMessage(`Could not connect audio: ${describeError(err)}`);
    return;
  }
  if (mine !== attempt) {
    const late = session;
    session = null;
    await late.disconnect();
    return;
  }
  for (const p of session.present()) if (p.isAgent) agentsPresent.add(p.identity);
  setPhase(agentsPresent.size > 0 ? "in_call" : "waiting");
}

/** The connection dropped mid-call: the same call, a fresh token, the same room. */
async function rejoin(): Promise<boolean> {
  const call = current;
  if (!call || rejoins >= MAX_REJOINS) return false;
  rejoins += 1;
  const mine = attempt;
  setPhase("connecting", "Connection lost, getting you back into the call…");
  try {
    const fresh = await apiRequest<CallCreated>("POST", `/api/calls/${encodeURIComponent(call.call_id)}/rejoin`, {
      body: { token: call.token },
    });
    if (mine !== attempt) return true;
    current = fresh;
    agentsPresent.clear();
    await connect(fresh, mine);
    return true;
  } catch {
    return false; // the call has ended meanwhile, or we cannot reach it: say it was disconnected
  }
}

function handleRequestError(err: unknown): void {
  if (err instanceof ApiError && err.status === 429) {
    cooldown(err.retryAfter ?? 30, err.code);
    return;
  }
  if (err instanceof ApiError && err.status === 503 && (err.code === "busy" || err.code === "at_capacity")) {
    cooldown(err.retryAfter ?? 60, err.code); // full, not broken: an honest wait, then try again
    return;
  }
  setPhase("idle");
  if (err instanceof ApiError) {
    if (err.field === "customer_name") {
      nameError.textContent = err.message.replace(/^customer_name:\s*/, "Name: ");
      nameError.hidden = false;
      nameInput.setAttribute("aria-invalid", "true");
      nameInput.focus();
      return;
    }
    if (err.status >= 500) {
      // The server's words for a 5xx name internals (Temporal, databases): not for customers.
      showMessage("Our call center is having trouble right now. Please try again in a minute.");
      return;
    }
    showMessage(err.status === 0 ? err.message : `The call could not be started: ${err.message}`);
    return;
  }
  showMessage(`The call could not be started: ${describeError(err)}`);
}

function onRoomClosed(reason: string | undefined): void {
  session = null;
  if (hangingUp || phase === "ended" || phase === "failed") return;
  if (!reason || !FINAL_REASONS.has(reason)) {
    void rejoin().then((back) => {
      if (!back) closed(reason);
    });
    return;
  }
  closed(reason);
}

function closed(reason: string | undefined): void {
  setPhase("ended");
  const why = reason && reason !== "CLIENT_INITIATED" ? ` (${reason.toLowerCase().replace(/_/g, " ")})` : "";
  showMessage(`The call was disconnected${why}.`, "info");
}

async function hangUp(note = "Thanks for calling CME Auto Sales."): Promise<void> {
  attempt += 1;
  hangingUp = true;
  const current = session;
  session = null;
  try {
    await current?.disconnect();
  } finally {
    hangingUp = false;
    const spoke = callStartedAt > 0 ? ` after ${formatDuration((Date.now() - callStartedAt) / 1000)}` : "";
    setPhase("ended", `Call ended${spoke}`);
    showMessage(note, "info");
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  void startCall();
});
hangupButton.addEventListener("click", () => void hangUp());
muteButton.addEventListener("click", async () => {
  if (!session) return;
  muted = !muted;
  muteButton.setAttribute("aria-pressed", String(muted));
  muteButton.textContent = muted ? "Unmute" : "Mute";
  try {
    await session.setMicrophoneMuted(muted);
  } catch (err) {
    showMessage(`Could not change the microphone: ${describeError(err)}`, "warning");
  }
});
enableAudio.addEventListener("click", async () => {
  await session?.startAudio();
  enableAudio.hidden = true;
});
nameInput.addEventListener("input", () => {
  nameError.hidden = true;
  nameInput.removeAttribute("aria-invalid");
});

setPhase("idle");
