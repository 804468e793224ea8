/**
 * The Desk (`#/desk`): a rep's state switch, the offer when one comes (a sound, the browser's
 * notification, a countdown, the briefing), Accept / Decline, then the call itself in this tab
 * (the microphone published into the customer's room, Mute, Back to Sarah, End call) and the
 * wrap-up. `WS /ws/desk` keeps the page current; supervisors see the queue and the figures too.
 */

import { wsUrl, type Accepted } from "../shared/api";
import { clear, h } from "../shared/dom";
import { formatDuration, humanize } from "../shared/format";
import { LiveSocket } from "../shared/live";
import { joinRoom, type VoiceSession } from "../shared/voice";
import { errorText } from "./call/context";
import { api, wsProtocols } from "./session";
import { toast } from "./ui";

export const DESK_ROUTE = "#/desk";

interface Me {
  rep_id: string;
  state: string;
  skills: string[];
  allowed_skills: string[];
  call_id: string;
  offer_id: string;
}
interface OfferNote {
  offer_id: string;
  call_id: string;
  skill: string;
  reason: string;
  expires_in_s: number;
}
interface Briefing {
  label: string;
  customer: string;
  why: string[];
  done: string[];
  summary: string;
  last_lines: { speaker: string; text: string }[];
}
interface AcceptedOffer {
  call_id: string;
  room: string;
  url: string;
  token: string;
  participant_identity: string;
  briefing: Briefing;
}
interface DeskMessage {
  type: string;
  me: Me;
  offer: OfferNote | null;
  queue: { call_id: string; position: number; skill: string; reason: string; waited_s: number; estimate_s: number | null }[];
  stats: Record<string, unknown> & { reps_by_state: Record<string, number> };
}

const CHOOSABLE = ["available", "break", "offline"];

export class DeskView {
  private socket: LiveSocket;
  private offer: OfferNote | null = null;
  private offerDeadline = 0;
  private voice: VoiceSession | null = null;
  private muted = false;
  private callId = "";
  private briefing: Briefing | null = null;
  private callSocket: LiveSocket | null = null;
  private readonly transcript = h("ol", { class: "desk-lines", id: "desk-transcript", "aria-label": "What is said on the call", "aria-live": "polite" });
  private timer: number;
  private readonly stateSelect = h("select", { class: "input input-sm", id: "desk-state", "aria-label": "Your state" });
  private readonly stateNow = h("strong", { id: "desk-state-now" }, "—");
  private readonly offerBox = h("section", { class: "panel desk-offer", id: "desk-offer", hidden: true, "aria-live": "assertive" });
  private readonly callBox = h("section", { class: "panel desk-call", id: "desk-call", hidden: true });
  private readonly figures = h("section", { class: "panel", id: "desk-figures" });

  constructor(root: HTMLElement) {
    for (const s of CHOOSABLE) this.stateSelect.append(h("option", { value: s }, humanize(s)));
    this.stateSelect.addEventListener("change", () => void this.choose(this.stateSelect.value));
    clear(root);
    root.append(
      h(
        "section",
        { class: "desk" },
        h("h1", {}, "Desk"),
        h("div", { class: "action-row" }, h("label", { for: "desk-state" }, "Your state "), this.stateSelect, h("span", {}, " now: "), this.stateNow),
        this.offerBox,
        this.callBox,
        this.figures,
      ),
    );
    this.socket = new LiveSocket({
      url: () => wsUrl("/ws/desk", {}),
      protocols: wsProtocols,
      onMessage: (msg) => {
        if (msg.type === "desk") this.apply(msg as unknown as DeskMessage);
      },
    });
    this.socket.start();
    this.timer = window.setInterval(() => this.tick(), 500);
  }

  destroy(): void {
    this.socket.stop();
    this.callSocket?.stop();
    window.clearInterval(this.timer);
    void this.voice?.disconnect();
    this.voice = null;
  }

  private apply(msg: DeskMessage): void {
    this.stateNow.textContent = humanize(msg.me.state);
    this.stateNow.dataset.state = msg.me.state;
    if (CHOOSABLE.includes(msg.me.state)) this.stateSelect.value = msg.me.state;
    this.stateSelect.disabled = msg.me.state === "busy";
    const fresh = msg.offer && msg.offer.offer_id !== this.offer?.offer_id;
    this.offer = msg.offer;
    if (msg.offer) this.offerDeadline = Date.now() + msg.offer.expires_in_s * 1000;
    if (fresh && msg.offer) void this.ring(msg.offer);
    if (!msg.offer) this.offerBox.hidden = true;
    if (msg.me.state === "wrap_up" && this.callId && !this.voice) this.renderWrapUp();
    this.renderFigures(msg);
  }

  private async ring(offer: OfferNote): Promise<void> {
    chime();
    if ("Notification" in window && Notification.permission === "granted") {
      new Notification("A call for you", { body: offer.reason || offer.skill });
    }
    let briefing: Briefing | null = null;
    try {
      const got = await api<{ offers: (OfferNote & { briefing: Briefing })[] }>("GET", "/api/desk/offers");
      briefing = got.offers.find((o) => o.offer_id === offer.offer_id)?.briefing ?? null;
    } catch {
      briefing = null; // the offer itself still shows; the briefing comes with the accept
    }
    if (this.offer?.offer_id !== offer.offer_id) return;
    clear(this.offerBox);
    this.offerBox.append(
      h("h2", {}, "A call for you"),
      h("p", {}, h("strong", {}, humanize(offer.skill)), ": ", offer.reason),
      h("p", { class: "desk-countdown", id: "desk-countdown" }, ""),
      briefing ? briefingBlock(briefing) : h("p", { class: "muted" }, "Briefing not available yet."),
      h(
        "div",
        { class: "action-row" },
        h("button", { type: "button", class: "btn btn-primary btn-sm", id: "desk-accept", onclick: () => void this.accept(offer) }, "Accept"),
        h("button", { type: "button", class: "btn btn-secondary btn-sm", id: "desk-decline", onclick: () => void this.decline(offer) }, "Decline"),
      ),
    );
    this.offerBox.hidden = false;
    this.tick();
  }

  private tick(): void {
    const el = this.offerBox.querySelector<HTMLElement>("#desk-countdown");
    if (el && this.offer) el.textContent = `Rings for ${formatDuration(Math.max(0, Math.round((this.offerDeadline - Date.now()) / 1000)))} more`;
  }

  private async choose(state: string): Promise<void> {
    try {
      await api("PUT", "/api/desk/me", { state });
      if (state === "available" && "Notification" in window && Notification.permission === "default") {
        void Notification.requestPermission();
      }
    } catch (err) {
      toast(`Could not change your state: ${errorText(err)}`, "error");
    }
  }

  private async decline(offer: OfferNote): Promise<void> {
    try {
      await api("POST", `/api/desk/offers/${encodeURIComponent(offer.offer_id)}/decline`, {});
    } catch (err) {
      toast(`Could not decline: ${errorText(err)}`, "error");
    }
    this.offerBox.hidden = true;
  }

  private async accept(offer: OfferNote): Promise<void> {
    let got: AcceptedOffer;
    try {
      got = await api<AcceptedOffer>("POST", `/api/desk/offers/${encodeURIComponent(offer.offer_id)}/accept`, {});
    } catch (err) {
      toast(`Could not take the call: ${errorText(err)}`, "error");
      return;
    }
    this.offerBox.hidden = true;
    this.callId = got.call_id;
    this.briefing = got.briefing;
    clear(this.transcript);
    this.follow(got.call_id);
    this.renderCall("Connecting your microphone…");
    try {
      this.voice = await joinRoom({
        url: got.url,
        token: got.token,
        publishMicrophone: true,
        audioContainer: document.getElementById("monitor-audio") ?? document.body,
        callbacks: { onDisconnected: () => this.leftRoom() },
      });
      this.renderCall("You are on the call: the customer hears you; Sarah listens.");
    } catch (err) {
      this.voice = null;
      this.renderCall(`Could not connect audio: ${errorText(err)}. Hand the call back to Sarah.`);
    }
  }

  /** The call's lines as they are said (the rep may follow the one call they are on). */
  private follow(callId: string): void {
    this.callSocket?.stop();
    this.callSocket = new LiveSocket({
      url: () => wsUrl(`/ws/calls/${encodeURIComponent(callId)}`, {}),
      protocols: wsProtocols,
      onMessage: (msg) => {
        const data = msg.data as { speaker?: string; text?: string } | undefined;
        if (msg.type === "final_transcript" && data?.text) {
          this.transcript.append(h("li", {}, h("strong", {}, `${humanize(data.speaker ?? "")}: `), data.text));
        }
      },
    });
    this.callSocket.start();
  }

  private renderCall(status: string): void {
    clear(this.callBox);
    const mute = h("button", { type: "button", class: "btn btn-secondary btn-sm", id: "desk-mute", "aria-pressed": String(this.muted), disabled: !this.voice, onclick: () => void this.toggleMute(mute) }, this.muted ? "Unmute" : "Mute");
    this.callBox.append(
      h("h2", {}, "On the call"),
      h("p", { id: "desk-call-status", role: "status" }, status),
      this.briefing ? briefingBlock(this.briefing) : h("span"),
      h("h3", {}, "Live transcript"),
      this.transcript,
      h(
        "div",
        { class: "action-row" },
        mute,
        h("button", { type: "button", class: "btn btn-secondary btn-sm", id: "desk-back-to-sarah", onclick: () => void this.backToSarah() }, "Back to Sarah"),
        h("button", { type: "button", class: "btn btn-danger btn-sm", id: "desk-end", onclick: () => void this.endCall() }, "End call"),
      ),
    );
    this.callBox.hidden = false;
  }

  private async toggleMute(button: HTMLButtonElement): Promise<void> {
    if (!this.voice) return;
    this.muted = !this.muted;
    await this.voice.setMicrophoneMuted(this.muted);
    button.textContent = this.muted ? "Unmute" : "Mute";
    button.setAttribute("aria-pressed", String(this.muted));
  }

  private async backToSarah(): Promise<void> {
    await this.leave();
    try {
      await api("POST", "/api/desk/me/back-to-sarah", {});
    } catch (err) {
      toast(`Could not hand back: ${errorText(err)}`, "error");
    }
    this.renderWrapUp();
  }

  private async endCall(): Promise<void> {
    try {
      await api<Accepted>("POST", "/api/desk/me/end-call", {});
    } catch (err) {
      toast(`Could not end the call: ${errorText(err)}`, "error");
      return;
    }
    await this.leave();
    this.renderWrapUp();
  }

  private async leave(): Promise<void> {
    const v = this.voice;
    this.voice = null;
    this.muted = false;
    await v?.disconnect();
  }

  private leftRoom(): void {
    if (!this.voice) return;
    this.voice = null;
    this.renderCall("The call's room closed.");
  }

  private renderWrapUp(): void {
    this.callSocket?.stop();
    this.callSocket = null;
    clear(this.callBox);
    this.callBox.append(
      h("h2", {}, "Wrap up"),
      h("p", { id: "desk-call-status", role: "status" }, "The call is over for you. Finish your notes, then take calls again."),
      h("button", { type: "button", class: "btn btn-primary btn-sm", id: "desk-wrapped-up", onclick: () => void this.wrappedUp() }, "Ready for calls"),
    );
    this.callBox.hidden = false;
  }

  private async wrappedUp(): Promise<void> {
    this.callId = "";
    this.briefing = null;
    this.callBox.hidden = true;
    await this.choose("available");
  }

  private renderFigures(msg: DeskMessage): void {
    const s = msg.stats;
    const pct = (v: unknown) => (typeof v === "number" ? `${v}%` : "—");
    const secs = (v: unknown) => (typeof v === "number" ? `${Math.round(v)} s` : "—");
    clear(this.figures);
    this.figures.append(
      h("h2", {}, "The desk now"),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Waiting"), h("dd", { id: "desk-waiting" }, String(s.waiting ?? 0)),
        h("dt", {}, "Longest wait"), h("dd", {}, secs(s.longest_wait_s)),
        h("dt", {}, `Service level (${secs(s.service_level_s)})`), h("dd", { id: "desk-service-level" }, pct(s.service_level_pct)),
        h("dt", {}, "Abandoned"), h("dd", {}, pct(s.abandon_rate_pct)),
        h("dt", {}, "Average wait / handle"), h("dd", {}, `${secs(s.average_wait_s)} / ${secs(s.average_handle_s)}`),
        h("dt", {}, "Reps"), h("dd", {}, Object.entries(s.reps_by_state).filter(([, n]) => n).map(([k, n]) => `${n} ${humanize(k)}`).join(", ") || "none"),
      ),
    );
  }
}

function briefingBlock(b: Briefing): HTMLElement {
  return h(
    "div",
    { class: "desk-briefing", id: "desk-briefing" },
    h("p", { class: "muted" }, b.label),
    h("p", {}, h("strong", {}, "Customer: "), b.customer),
    h("p", {}, h("strong", {}, "Why: "), b.why.join("; ") || "—"),
    ...b.done.map((d) => h("p", {}, d)),
    h("ul", { class: "desk-lines" }, ...b.last_lines.map((l) => h("li", {}, h("strong", {}, `${humanize(l.speaker)}: `), l.text))),
  );
}

/** A short two-note chime (Web Audio; silent where the browser blocks audio). */
function chime(): void {
  try {
    const ctx = new AudioContext();
    for (const [i, f] of [660, 880].entries()) {
      const o = ctx.createOscillator();
      const g = ctx.createGain();
      o.frequency.value = f;
      g.gain.value = 0.08;
      o.connect(g).connect(ctx.destination);
      o.start(ctx.currentTime + i * 0.18);
      o.stop(ctx.currentTime + i * 0.18 + 0.15);
    }
  } catch {
    // no audio here: the notification and the panel still show the offer
  }
}
