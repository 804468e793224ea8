/** Badges, live indicators and toasts: the dashboard's small visual vocabulary. */

import { h } from "../shared/dom";
import { humanize } from "../shared/format";
import type { LiveState } from "../shared/live";

const CALL_STATUS: Record<string, { label: string; tone: string }> = {
  waiting_for_agent: { label: "Waiting for agent", tone: "amber" },
  dialing: { label: "Dialing", tone: "blue" },
  ringing: { label: "Ringing", tone: "blue" },
  in_progress: { label: "In progress", tone: "green" },
  ending: { label: "Ending", tone: "amber" },
  completed: { label: "Completed", tone: "gray" },
  no_agent: { label: "No agent", tone: "red" },
  failed: { label: "Failed", tone: "red" },
};

const RECORDING_STATUS: Record<string, { label: string; tone: string }> = {
  none: { label: "Not recorded", tone: "gray" },
  recording: { label: "Recording", tone: "red" },
  stopping: { label: "Stopping", tone: "blue" },
  uploading: { label: "Uploading", tone: "blue" },
  stored: { label: "Stored", tone: "green" },
  failed: { label: "Failed", tone: "red" },
};

export function statusBadge(status: string): HTMLElement {
  const s = CALL_STATUS[status] ?? { label: humanize(status || "unknown"), tone: "gray" };
  return h("span", { class: `badge badge-${s.tone}`, "data-status": status }, h("i", { class: "badge-dot" }), s.label);
}

export function recordingBadge(status: string): HTMLElement {
  const s = RECORDING_STATUS[status] ?? { label: humanize(status || "unknown"), tone: "gray" };
  return h(
    "span",
    { class: `badge badge-outline badge-${s.tone}`, "data-recording": status, title: `Recording: ${s.label}` },
    h("i", { class: status === "recording" ? "badge-dot rec" : "badge-dot" }),
    status === "none" ? s.label : `Rec · ${s.label}`,
  );
}

const LIVE_LABEL: Record<LiveState, string> = {
  connecting: "Connecting",
  open: "Live",
  reconnecting: "Reconnecting",
  closed: "Offline",
  refused: "Refused",
};

export function setLive(el: HTMLElement, state: LiveState, detail?: string): void {
  el.dataset.state = state;
  const label = el.querySelector("span");
  if (label) label.textContent = LIVE_LABEL[state];
  el.title = detail ? `${LIVE_LABEL[state]}: ${detail}` : LIVE_LABEL[state];
}

export function livePill(state: LiveState = "connecting"): HTMLElement {
  const el = h("span", { class: "live-pill" }, h("i"), h("span"));
  setLive(el, state);
  return el;
}

export function toast(text: string, kind: "info" | "success" | "error" = "info"): void {
  const host = document.getElementById("toasts");
  if (!host) return;
  const el = h("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status" }, text);
  host.appendChild(el);
  window.setTimeout(() => el.classList.add("leaving"), 4200);
  window.setTimeout(() => el.remove(), 4600);
}

export function speakerName(speaker: unknown, customerName: string | null): string {
  if (speaker === "assistant" || speaker === "agent") return "Sarah";
  if (speaker === "customer") return customerName || "Customer";
  if (speaker === "supervisor") return "Supervisor";
  return typeof speaker === "string" && speaker ? humanize(speaker) : "Unknown";
}
