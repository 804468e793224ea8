/**
 * The call's head: name, status and recording badges, the live pill, the actions (whisper,
 * monitor, end, the workflow in the Temporal UI), their confirmation forms, the error banner and
 * the counters. End and whisper are plain REST calls whose effects come back through the socket.
 */

import type { Accepted, CallLinks, LiveKitGrant } from "../../shared/api";
import { clear, h, icon, ICONS } from "../../shared/dom";
import { formatDuration, humanize, secondsBetween } from "../../shared/format";
import type { LiveState } from "../../shared/live";
import { joinRoom, type VoiceSession } from "../../shared/voice";
import { api, temporalWorkflowUrl } from "../session";
import { channelChip, TransferControl } from "../phone";
import { livePill, recordingBadge, setLive, statusBadge, toast } from "../ui";
import { ACTIVE, errorText, type CallContext } from "./context";

export class CallHeader {
  /** Top-level children of the call's section, in order. */
  readonly elements: HTMLElement[];
  private readonly badges = h("div", { class: "detail-badges" });
  private readonly title = h("h1", { class: "detail-title" });
  private readonly live = livePill();
  private readonly duration = h("strong", { class: "stat-value mono", id: "stat-duration" }, "—");
  private readonly silenceCount = h("strong", { class: "stat-value", id: "silence-count" }, "0");
  private readonly keywordCount = h("strong", { class: "stat-value", id: "keyword-count" }, "0");
  private readonly lineCount = h("strong", { class: "stat-value", id: "line-count" }, "0");
  private readonly banner = h("div", { class: "detail-banner", role: "alert", hidden: true });
  /** "Callback of <call>" / "Called back in <call>, …": the calls a callback ties together. */
  private readonly links = h("nav", { class: "detail-links", id: "call-links", "aria-label": "Linked calls", hidden: true });
  private readonly endButton: HTMLButtonElement;
  private readonly whisperButton: HTMLButtonElement;
  private readonly takeoverButton: HTMLButtonElement;
  private takenOver = false;
  /** This tab's own seat in the room while the supervisor is live (microphone published). */
  private voice: VoiceSession | null = null;
  private muted = false;
  private readonly liveMic = h("span", { class: "mic-live", id: "you-are-live", role: "status", hidden: true }, h("i"), "You are live: the customer hears you");
  private readonly muteButton: HTMLButtonElement;
  private whisperId: { text: string; id: string } | null = null; // kept until sent: a retry reuses it
  private readonly whisperForm: HTMLFormElement;
  private readonly endForm: HTMLFormElement;
  private readonly transfer: TransferControl;

  constructor(
    private readonly ctx: CallContext,
    /** Buttons owned by other panels (monitor), placed among the actions. */
    extraActions: HTMLElement[],
  ) {
    this.transfer = new TransferControl(ctx.callId, (status) => this.ctx.update({ status }));
    this.endButton = h(
      "button",
      { type: "button", class: "btn btn-danger btn-sm", id: "end-call-button", onclick: () => this.toggle(this.endForm) },
      icon(ICONS.stop),
      "End call",
    );
    this.whisperButton = h(
      "button",
      { type: "button", class: "btn btn-secondary btn-sm", id: "whisper-button", onclick: () => this.toggle(this.whisperForm) },
      icon(ICONS.message),
      "Whisper",
    );
    this.takeoverButton = h(
      "button",
      { type: "button", class: "btn btn-secondary btn-sm", id: "takeover-button", "aria-pressed": "false", onclick: () => void this.switchSpeaker() },
      "Take over",
    );
    this.muteButton = h(
      "button",
      { type: "button", class: "btn btn-secondary btn-sm", id: "mute-button", "aria-pressed": "false", hidden: true, onclick: () => void this.toggleMute() },
      "Mute",
    );
    const reason = h("input", {
      class: "input input-sm",
      id: "end-reason",
      name: "reason",
      maxlength: 200,
      placeholder: "Reason (optional), e.g. abusive caller",
    });
    this.endForm = h(
      "form",
      { class: "action-form danger", id: "end-form", hidden: true },
      h("p", {}, h("strong", {}, "End this call for the customer?"), " The agent says goodbye and the room closes."),
      h(
        "div",
        { class: "action-row" },
        reason,
        h("button", { type: "submit", class: "btn btn-danger btn-sm", id: "end-confirm" }, "End call"),
        h("button", { type: "button", class: "btn btn-ghost btn-sm", onclick: () => (this.endForm.hidden = true) }, "Cancel"),
      ),
    );
    this.endForm.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.endCall(reason.value.trim());
    });
    const whisperText = h("input", {
      class: "input input-sm",
      id: "whisper-text",
      name: "text",
      maxlength: 500,
      required: true,
      placeholder: "Instruction for Sarah, e.g. offer the weekend test-drive slot",
    });
    this.whisperForm = h(
      "form",
      { class: "action-form", id: "whisper-form", hidden: true },
      h("p", {}, "Only Sarah receives this; the customer does not hear it."),
      h(
        "div",
        { class: "action-row" },
        whisperText,
        h("button", { type: "submit", class: "btn btn-primary btn-sm", id: "whisper-send" }, "Send"),
      ),
    );
    this.whisperForm.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.whisper(whisperText);
    });

    const stat = (label: string, value: HTMLElement, tone = "") =>
      h("div", { class: `stat ${tone}` }, h("span", { class: "stat-label" }, label), value);
    this.elements = [
      h(
        "header",
        { class: "detail-head" },
        h(
          "div",
          { class: "detail-id" },
          this.title,
          h("div", { class: "detail-sub" }, h("code", { id: "detail-call-id" }, ctx.callId), this.badges, this.live),
          this.links,
        ),
        h(
          "div",
          { class: "detail-actions" },
          this.whisperButton,
          this.takeoverButton,
          this.liveMic,
          this.muteButton,
          ...extraActions,
          this.transfer.button,
          this.endButton,
          h(
            "a",
            {
              class: "btn btn-ghost btn-sm",
              id: "temporal-workflow-link",
              href: temporalWorkflowUrl(ctx.callId),
              target: "_blank",
              rel: "noopener",
              title: "Open this call's workflow in the Temporal Web UI",
            },
            "Workflow",
            icon(ICONS.external),
          ),
        ),
      ),
      this.banner,
      this.endForm,
      this.whisperForm,
      this.transfer.form,
      h(
        "div",
        { class: "stats" },
        stat("Duration", this.duration),
        stat("Silence alerts", this.silenceCount, "stat-amber"),
        stat("Keyword alerts", this.keywordCount, "stat-red"),
        stat("Transcript lines", this.lineCount),
      ),
    ];
  }

  /** Whether the call can still be acted on (the socket may outlive the call, for late events). */
  isLive(): boolean {
    const c = this.ctx.call();
    return c.live && (ACTIVE.has(c.status) || c.status === "unknown");
  }

  render(counts: { silence: number; keyword: number; lines: number }): void {
    const c = this.ctx.call();
    this.title.textContent = c.customer_name || "Anonymous caller";
    clear(this.badges);
    this.badges.append(statusBadge(c.status), recordingBadge(c.recording_status));
    const chip = channelChip(c);
    if (chip) this.badges.append(chip);
    const live = this.isLive();
    this.transfer.render(c, live);
    this.endButton.disabled = !live || c.status === "ending"; // the workflow refuses a second end
    this.whisperButton.disabled = !live;
    this.takeoverButton.disabled = !live;
    if (!live) {
      this.endForm.hidden = true;
      this.whisperForm.hidden = true;
    }
    // The socket stays open for late events (recording), but "Live" would mislead on an ended call.
    this.live.hidden = !live;
    this.silenceCount.textContent = String(Math.max(c.silence_alerts, counts.silence));
    this.keywordCount.textContent = String(Math.max(c.keyword_alerts, counts.keyword));
    this.lineCount.textContent = String(counts.lines);
    this.tick();
  }

  /** The calls this one is linked to by a callback, each a link to its own view. */
  setLinks(links: CallLinks | undefined): void {
    clear(this.links);
    const callLink = (id: string) => h("a", { href: `#/calls/${encodeURIComponent(id)}`, class: "mono" }, id);
    const of = links?.callback_of;
    if (of) {
      this.links.append(
        h(
          "span",
          { id: "callback-of" },
          "Callback of ",
          of.call_id ? callLink(of.call_id) : h("span", {}, "a callback scheduled outside a call"),
          h("span", { class: "muted" }, ` (callback ${of.callback_id})`),
        ),
      );
    }
    const back = (links?.called_back_in ?? []).filter((l) => l.call_id);
    if (back.length) {
      const items: (HTMLElement | string)[] = [];
      back.forEach((l, i) => items.push(...(i ? [", "] : []), callLink(l.call_id as string)));
      this.links.append(h("span", { id: "called-back-in" }, "Called back in ", ...items));
    }
    this.links.hidden = !of && !back.length;
  }

  setLines(lines: number): void {
    this.lineCount.textContent = String(lines);
  }

  tick(): void {
    const c = this.ctx.call();
    const from = c.agent_joined_at ?? c.created_at;
    if (!from) return;
    const seconds = secondsBetween(from, c.live ? null : (c.ended_at ?? null));
    this.duration.textContent = formatDuration(seconds);
  }

  setSocketState(state: LiveState, detail?: string): void {
    setLive(this.live, state, detail);
    if (state === "refused") this.showBanner(`Live updates refused: ${detail ?? "unknown reason"}`);
    else if (state === "open") this.showBanner(null);
  }

  showBanner(text: string | null): void {
    this.banner.hidden = !text;
    this.banner.textContent = text ?? "";
  }

  private toggle(form: HTMLFormElement): void {
    const show = form.hidden;
    this.endForm.hidden = true;
    this.whisperForm.hidden = true;
    form.hidden = !show;
    if (show) form.querySelector("input")?.focus();
  }

  private async endCall(reason: string): Promise<void> {
    const confirm = this.endForm.querySelector<HTMLButtonElement>("button[type=submit]");
    if (confirm) confirm.disabled = true;
    try {
      const result = await api<Accepted>(
        "POST",
        `/api/calls/${encodeURIComponent(this.ctx.callId)}/end`,
        reason ? { reason } : {},
      );
      this.endForm.hidden = true;
      toast(`Ending the call (${humanize(result.status)}).`, "success");
      this.ctx.update({ status: ACTIVE.has(result.status) || result.status === "completed" ? result.status : "ending" });
    } catch (err) {
      toast(`Could not end the call: ${errorText(err)}`, "error");
    } finally {
      if (confirm) confirm.disabled = false;
    }
  }

  private async whisper(input: HTMLInputElement): Promise<void> {
    const text = input.value.trim();
    if (!text) {
      input.focus();
      return;
    }
    const send = this.whisperForm.querySelector<HTMLButtonElement>("button[type=submit]");
    if (send) send.disabled = true;
    try {
      if (this.whisperId?.text !== text) this.whisperId = { text, id: newCommandId() };
      await api<Accepted>("POST", `/api/calls/${encodeURIComponent(this.ctx.callId)}/whisper`, { text, id: this.whisperId.id });
      this.whisperId = null;
      input.value = "";
      this.whisperForm.hidden = true;
      toast("Whisper sent to Sarah.", "success");
    } catch (err) {
      toast(`Whisper not sent: ${errorText(err)}`, "error");
    } finally {
      if (send) send.disabled = false;
    }
  }

  /**
   * Take over: join the room with the barge token and publish this microphone, and only once
   * the customer can hear it tell Sarah to stop (audited); she keeps listening. Release: stop
   * publishing (leave the room), then hand the call back to her. Sarah is never silenced while
   * nobody can be heard.
   */
  private async switchSpeaker(): Promise<void> {
    this.takeoverButton.disabled = true;
    try {
      if (this.voice || this.takenOver) await this.release();
      else await this.takeOver();
    } finally {
      this.takeoverButton.disabled = !this.isLive();
    }
  }

  private async takeOver(): Promise<void> {
    const path = `/api/calls/${encodeURIComponent(this.ctx.callId)}`;
    try {
      const grant = await api<LiveKitGrant>("POST", `${path}/barge`, {});
      this.voice = await joinRoom({
        url: grant.livekit_url,
        token: grant.token,
        publishMicrophone: true,
        audioContainer: document.getElementById("monitor-audio") ?? document.body,
        callbacks: { onDisconnected: () => this.wentQuiet("Your audio left the call: Sarah has it again.") },
      });
      this.showLiveMic(true);
      await api<Accepted>("POST", `${path}/takeover`, { id: newCommandId() });
      this.showTakenOver(true);
      toast("You are live: the customer hears you; Sarah keeps listening.", "success");
    } catch (err) {
      await this.voice?.disconnect();
      this.voice = null;
      this.showLiveMic(false);
      toast(`Could not take over: ${errorText(err)}`, "error");
    }
  }

  private async release(): Promise<void> {
    const v = this.voice;
    this.voice = null;
    await v?.disconnect();
    this.showLiveMic(false);
    try {
      await api<Accepted>("POST", `/api/calls/${encodeURIComponent(this.ctx.callId)}/release`, { id: newCommandId() });
      this.showTakenOver(false);
      toast("Sarah has the call again.", "success");
    } catch (err) {
      toast(`Could not release: ${errorText(err)}`, "error");
    }
  }

  private wentQuiet(text: string): void {
    if (!this.voice) return;
    this.voice = null;
    this.showLiveMic(false);
    toast(text, "info");
  }

  private async toggleMute(): Promise<void> {
    if (!this.voice) return;
    this.muted = !this.muted;
    await this.voice.setMicrophoneMuted(this.muted);
    this.muteButton.textContent = this.muted ? "Unmute" : "Mute";
    this.muteButton.setAttribute("aria-pressed", String(this.muted));
  }

  private showLiveMic(on: boolean): void {
    this.liveMic.hidden = !on;
    this.muteButton.hidden = !on;
    if (!on) {
      this.muted = false;
      this.muteButton.textContent = "Mute";
      this.muteButton.setAttribute("aria-pressed", "false");
    }
  }

  /** Leave the room (the view is going away). */
  destroy(): void {
    void this.voice?.disconnect();
    this.voice = null;
  }

  showTakenOver(on: boolean): void {
    this.takenOver = on;
    this.takeoverButton.textContent = on ? "Release to Sarah" : "Take over";
    this.takeoverButton.setAttribute("aria-pressed", String(on));
  }
}

function newCommandId(): string {
  return `dash-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
}
