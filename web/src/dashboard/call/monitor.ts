/**
 * Monitor: a hidden, listen-only LiveKit seat in the call's room (`POST .../monitor`), joined in
 * this tab. The panel owns its header button; the view enables it while the call is live.
 */

import type { LiveKitGrant } from "../../shared/api";
import { clear, h, icon, ICONS } from "../../shared/dom";
import { formatDateTime } from "../../shared/format";
import { describeError, joinRoom, type VoiceSession } from "../../shared/voice";
import { api } from "../session";
import { errorText, panelSection, type CallContext } from "./context";

export class MonitorPanel {
  readonly element: HTMLElement;
  readonly button: HTMLButtonElement;
  private readonly body = h("div", { class: "monitor-body", id: "monitor-panel" });
  private session: VoiceSession | null = null;
  private live = false;

  constructor(private readonly ctx: CallContext) {
    this.button = h(
      "button",
      { type: "button", class: "btn btn-secondary btn-sm", id: "monitor-button", onclick: () => void this.start() },
      icon(ICONS.headphones),
      "Monitor",
    );
    this.element = panelSection("Monitor", this.body);
    this.renderIdle();
  }

  setLive(live: boolean): void {
    this.live = live;
    this.button.disabled = !live;
  }

  destroy(): void {
    void this.session?.disconnect();
    this.session = null;
  }

  private renderIdle(note?: string): void {
    clear(this.body);
    this.body.append(h("p", { class: "muted" }, "Listen in without being heard or seen: a hidden, listen-only seat in the call's room."));
    if (note) this.body.append(h("p", { class: "rec-state rec-failed", id: "monitor-error" }, note));
  }

  private async start(): Promise<void> {
    if (this.session) return;
    this.button.disabled = true;
    let grant: LiveKitGrant;
    try {
      grant = await api<LiveKitGrant>("POST", `/api/calls/${encodeURIComponent(this.ctx.callId)}/monitor`, {});
    } catch (err) {
      this.button.disabled = !this.live;
      this.renderIdle(`Monitor refused: ${errorText(err)}`);
      return;
    }
    clear(this.body);
    const state = h("p", { class: "monitor-state", id: "monitor-state" }, "Connecting audio…");
    const stop = h(
      "button",
      { type: "button", class: "btn btn-secondary btn-sm", id: "monitor-stop", onclick: () => void this.stop() },
      icon(ICONS.mute),
      "Stop listening",
    );
    this.body.append(
      state,
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Room"),
        h("dd", { class: "mono", id: "monitor-room" }, grant.room_name),
        h("dt", {}, "Identity"),
        h("dd", { class: "mono" }, grant.participant_identity),
        h("dt", {}, "Seat"),
        h("dd", {}, `${grant.hidden ? "hidden" : "visible"}, ${grant.can_publish ? "can speak" : "listen-only"}`),
        h("dt", {}, "Token expires"),
        h("dd", {}, formatDateTime(grant.expires_at)),
      ),
      stop,
    );
    const container = document.getElementById("monitor-audio") ?? this.body;
    try {
      this.session = await joinRoom({
        url: grant.livekit_url,
        token: grant.token,
        publishMicrophone: false,
        audioContainer: container,
        callbacks: {
          onDisconnected: () => {
            this.session = null;
            this.renderIdle("Monitoring ended: the room closed.");
            this.button.disabled = !this.live;
          },
          onAudioBlocked: (blocked) => {
            state.textContent = blocked ? "Click anywhere to allow audio playback." : "Listening live.";
            if (blocked) document.addEventListener("click", () => void this.session?.startAudio(), { once: true });
          },
        },
      });
      state.textContent = "Listening live.";
      state.classList.add("on");
    } catch (err) {
      this.session = null;
      state.textContent = `Could not connect audio: ${describeError(err)}`;
      state.classList.add("error");
      state.id = "monitor-error";
      this.button.disabled = !this.live;
    }
  }

  private async stop(): Promise<void> {
    const m = this.session;
    this.session = null;
    await m?.disconnect();
    this.renderIdle();
    this.button.disabled = !this.live;
  }
}
