/**
 * One call: a snapshot, then every stored event and live interim lines from
 * `WS /ws/calls/{id}?after=<seq>`. The highest `seq` seen goes into `after` on every reconnect,
 * so the transcript never misses or repeats a line. Actions (end, monitor, whisper, recording
 * retry) are plain REST calls whose effects come back through the same socket.
 */

import {
  ApiError,
  isRecord,
  wsUrl,
  type Accepted,
  type CallDetail,
  type CallEvent,
  type CallSummary,
  type LiveKitGrant,
  type RecordingLink,
} from "../shared/api";
import { clear, h, icon, ICONS } from "../shared/dom";
import { formatBytes, formatClock, formatDateTime, formatDuration, humanize, secondsBetween } from "../shared/format";
import { LiveSocket, type LiveState } from "../shared/live";
import { describeError, joinRoom, type VoiceSession } from "../shared/voice";
import { api, temporalWorkflowUrl, token } from "./session";
import { livePill, recordingBadge, setLive, speakerName, statusBadge, toast } from "./ui";

const ACTIVE = new Set(["waiting_for_agent", "in_progress", "ending"]);
const RECORDING_STATES = new Set(["none", "recording", "stopping", "uploading", "stored", "failed"]);

function str(value: unknown): string | undefined {
  return typeof value === "string" && value ? value : undefined;
}

function num(value: unknown): number | undefined {
  return typeof value === "number" && Number.isFinite(value) ? value : undefined;
}

function errorText(err: unknown): string {
  return err instanceof ApiError ? err.message : describeError(err);
}

export class CallView {
  private call: CallSummary;
  private lastSeq = 0;
  private finalLines = 0;
  private silenceSeen = 0;
  private keywordSeen = 0;
  private readonly socket: LiveSocket;
  private readonly tickTimer: number;
  private monitor: VoiceSession | null = null;
  private recordingLoaded = false;
  private readonly interim = new Map<string, HTMLElement>();

  // Elements that change after the first render.
  private readonly root: HTMLElement;
  private readonly badges = h("div", { class: "detail-badges" });
  private readonly title = h("h1", { class: "detail-title" });
  private readonly live = livePill();
  private readonly duration = h("strong", { class: "stat-value mono", id: "stat-duration" }, "—");
  private readonly silenceCount = h("strong", { class: "stat-value", id: "silence-count" }, "0");
  private readonly keywordCount = h("strong", { class: "stat-value", id: "keyword-count" }, "0");
  private readonly lineCount = h("strong", { class: "stat-value", id: "line-count" }, "0");
  private readonly transcript = h("ol", { class: "transcript", id: "transcript", "aria-live": "polite" });
  private readonly transcriptEmpty = h("p", { class: "transcript-empty" }, "Waiting for the conversation to start…");
  private readonly timeline = h("ol", { class: "timeline", id: "timeline" });
  private readonly recordingBody = h("div", { class: "recording-body", id: "recording-panel" });
  private readonly monitorBody = h("div", { class: "monitor-body", id: "monitor-panel" });
  private readonly metrics = h("dl", { class: "metrics", id: "agent-metrics" });
  private readonly banner = h("div", { class: "detail-banner", role: "alert", hidden: true });
  private readonly endButton: HTMLButtonElement;
  private readonly monitorButton: HTMLButtonElement;
  private readonly whisperButton: HTMLButtonElement;
  private readonly takeoverButton: HTMLButtonElement;
  private takenOver = false;
  private whisperId: { text: string; id: string } | null = null; // kept until sent: a retry reuses it
  private readonly whisperForm: HTMLFormElement;
  private readonly endForm: HTMLFormElement;

  constructor(
    readonly callId: string,
    container: HTMLElement,
    known: CallSummary | undefined,
    private readonly onCallChanged: (call: CallSummary) => void,
  ) {
    this.call = known ?? {
      call_id: callId,
      room_name: `call-${callId}`,
      customer_name: null,
      status: "unknown",
      recording_status: "none",
      created_at: null,
      silence_alerts: 0,
      keyword_alerts: 0,
      last_seq: 0,
      live: true,
    };

    this.endButton = h(
      "button",
      { type: "button", class: "btn btn-danger btn-sm", id: "end-call-button", onclick: () => this.toggle(this.endForm) },
      icon(ICONS.stop),
      "End call",
    );
    this.monitorButton = h(
      "button",
      { type: "button", class: "btn btn-secondary btn-sm", id: "monitor-button", onclick: () => void this.startMonitor() },
      icon(ICONS.headphones),
      "Monitor",
    );
    this.whisperButton = h(
      "button",
      { type: "button", class: "btn btn-secondary btn-sm", id: "whisper-button", onclick: () => this.toggle(this.whisperForm) },
      icon(ICONS.message),
      "Whisper",
    );
    this.takeoverButton = h(
      "button",
      { type: "button", class: "btn btn-secondary btn-sm", id: "takeover-button", onclick: () => void this.switchSpeaker() },
      "Take over",
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

    this.root = this.layout();
    clear(container);
    container.appendChild(this.root);
    this.renderHeader();
    this.renderRecording();
    this.renderMonitorIdle();

    this.socket = new LiveSocket({
      url: () => wsUrl(`/ws/calls/${encodeURIComponent(callId)}`, { token: token() ?? "", after: this.lastSeq }),
      onMessage: (msg) => this.onMessage(msg),
      onState: (state, detail) => this.onSocketState(state, detail),
    });
    this.socket.start();
    this.tickTimer = window.setInterval(() => this.tick(), 1000);
    void this.loadDetail();
  }

  destroy(): void {
    this.socket.stop();
    window.clearInterval(this.tickTimer);
    void this.monitor?.disconnect();
    this.monitor = null;
  }

  // --- layout -----------------------------------------------------------------------------

  private layout(): HTMLElement {
    const stat = (label: string, value: HTMLElement, tone = "") =>
      h("div", { class: `stat ${tone}` }, h("span", { class: "stat-label" }, label), value);
    return h(
      "section",
      { class: "detail", "data-call-id": this.callId },
      h(
        "header",
        { class: "detail-head" },
        h(
          "div",
          { class: "detail-id" },
          this.title,
          h("div", { class: "detail-sub" }, h("code", { id: "detail-call-id" }, this.callId), this.badges, this.live),
        ),
        h(
          "div",
          { class: "detail-actions" },
          this.whisperButton,
          this.takeoverButton,
          this.monitorButton,
          this.endButton,
          h(
            "a",
            {
              class: "btn btn-ghost btn-sm",
              id: "temporal-workflow-link",
              href: temporalWorkflowUrl(this.callId),
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
      h(
        "div",
        { class: "stats" },
        stat("Duration", this.duration),
        stat("Silence alerts", this.silenceCount, "stat-amber"),
        stat("Keyword alerts", this.keywordCount, "stat-red"),
        stat("Transcript lines", this.lineCount),
      ),
      h(
        "div",
        { class: "detail-grid" },
        h(
          "section",
          { class: "panel transcript-panel" },
          h("header", { class: "panel-head" }, h("h2", {}, "Live transcript")),
          h("div", { class: "transcript-scroll", id: "transcript-scroll" }, this.transcriptEmpty, this.transcript),
        ),
        h(
          "div",
          { class: "side" },
          h("section", { class: "panel" }, h("header", { class: "panel-head" }, h("h2", {}, "Recording")), this.recordingBody),
          h("section", { class: "panel" }, h("header", { class: "panel-head" }, h("h2", {}, "Monitor")), this.monitorBody),
          h("section", { class: "panel" }, h("header", { class: "panel-head" }, h("h2", {}, "Activity")), this.timeline),
          h("section", { class: "panel" }, h("header", { class: "panel-head" }, h("h2", {}, "Agent latency")), this.metrics),
        ),
      ),
    );
  }

  private renderHeader(): void {
    const c = this.call;
    this.title.textContent = c.customer_name || "Anonymous caller";
    clear(this.badges);
    this.badges.append(statusBadge(c.status), recordingBadge(c.recording_status));
    const live = c.live && (ACTIVE.has(c.status) || c.status === "unknown");
    this.endButton.disabled = !live || c.status === "ending"; // the workflow refuses a second end
    this.monitorButton.disabled = !live;
    this.whisperButton.disabled = !live;
    this.takeoverButton.disabled = !live;
    if (!live) {
      this.endForm.hidden = true;
      this.whisperForm.hidden = true;
    }
    // The socket stays open for late events (recording), but "Live" would mislead on an ended call.
    this.live.hidden = !live;
    this.transcriptEmpty.textContent = live ? "Waiting for the conversation to start…" : "No transcript was recorded for this call.";
    this.silenceCount.textContent = String(Math.max(c.silence_alerts, this.silenceSeen));
    this.keywordCount.textContent = String(Math.max(c.keyword_alerts, this.keywordSeen));
    this.lineCount.textContent = String(this.finalLines);
    this.tick();
  }

  private tick(): void {
    const c = this.call;
    const from = c.agent_joined_at ?? c.created_at;
    if (!from) return;
    const seconds = secondsBetween(from, c.live ? null : (c.ended_at ?? null));
    this.duration.textContent = formatDuration(seconds);
  }

  private toggle(form: HTMLFormElement): void {
    const show = form.hidden;
    this.endForm.hidden = true;
    this.whisperForm.hidden = true;
    form.hidden = !show;
    if (show) form.querySelector("input")?.focus();
  }

  private showBanner(text: string | null): void {
    this.banner.hidden = !text;
    this.banner.textContent = text ?? "";
  }

  // --- data -------------------------------------------------------------------------------

  private async loadDetail(): Promise<void> {
    try {
      const detail = await api<CallDetail>("GET", `/api/calls/${encodeURIComponent(this.callId)}`);
      this.updateCall(detail);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) this.showBanner(`No call ${this.callId}.`);
      // 503: the workflow cannot be asked right now; the socket's snapshot (the stored row) stands in.
      else if (err instanceof ApiError && (err.status === 401 || err.status === 503)) return;
      else toast(`Could not load the call: ${errorText(err)}`, "error");
    }
  }

  private updateCall(partial: Partial<CallSummary>): void {
    const before = this.call.recording_status;
    const merged = { ...this.call };
    for (const [key, value] of Object.entries(partial)) {
      if (value !== undefined) (merged as Record<string, unknown>)[key] = value;
    }
    merged.live = ACTIVE.has(merged.status) || (merged.status === "unknown" && merged.live);
    this.call = merged;
    this.renderHeader();
    this.onCallChanged(merged);
    if (merged.recording_status !== before || !this.recordingLoaded) this.renderRecording();
  }

  private onSocketState(state: LiveState, detail?: string): void {
    setLive(this.live, state, detail);
    if (state === "refused") this.showBanner(`Live updates refused: ${detail ?? "unknown reason"}`);
    else if (state === "open") this.showBanner(null);
  }

  private onMessage(msg: Record<string, unknown>): void {
    const type = str(msg.type);
    if (type === "snapshot") {
      if (isRecord(msg.call)) this.updateCall(msg.call as unknown as Partial<CallSummary>);
      return;
    }
    if (type === "error" || type === "resync" || !type) return;
    if (type === "interim_transcript") {
      this.showInterim(msg as unknown as CallEvent);
      return;
    }
    const seq = num(msg.seq);
    if (seq !== undefined) {
      if (seq <= this.lastSeq) return; // already shown (a replay overlapping a live message)
      this.lastSeq = seq;
    }
    this.onEvent(msg as unknown as CallEvent);
  }

  private onEvent(event: CallEvent): void {
    const data = isRecord(event.data) ? event.data : {};
    switch (event.type) {
      case "final_transcript":
        this.addFinal(event, data);
        break;
      case "silence_alert": {
        this.silenceSeen += 1;
        const secs = num(data.duration_s) ?? num(data.quiet_s) ?? num(data.duration);
        const who = data.speaker ? ` (${speakerName(data.speaker, this.call.customer_name)})` : "";
        const text = `Silence for ${secs !== undefined ? Math.round(secs) + " s" : "a while"}${who}`;
        this.addAlert(event, "silence", text);
        this.addTimeline(event, "alert-amber", text);
        this.updateCall({ silence_alerts: Math.max(this.call.silence_alerts, this.silenceSeen) });
        break;
      }
      case "keyword_alert": {
        this.keywordSeen += 1;
        const words = Array.isArray(data.keywords) ? data.keywords.filter((k) => typeof k === "string") : [];
        const keyword = words.join(", ") || str(data.keyword) || "?";
        // The alert points at the line that triggered it: flag that line and quote it.
        const lineSeq = num(data.line_seq);
        const flagged = lineSeq !== undefined ? this.transcript.querySelector<HTMLElement>(`li[data-seq="${lineSeq}"]`) : null;
        flagged?.classList.add("flagged");
        const said = str(data.text) ?? flagged?.querySelector(".line-text")?.textContent ?? undefined;
        this.addAlert(event, "keyword", `Keyword “${keyword}”${said ? `: ${said}` : ""}`);
        this.addTimeline(event, "alert-red", `Keyword alert: ${keyword}`);
        this.updateCall({ keyword_alerts: Math.max(this.call.keyword_alerts, this.keywordSeen) });
        break;
      }
      case "status": {
        const status = str(data.status);
        const reason = str(data.reason);
        if (status) {
          const patch: Partial<CallSummary> = { status };
          if (!ACTIVE.has(status)) patch.ended_at = this.call.ended_at ?? event.at;
          if (status === "in_progress" && !this.call.agent_joined_at) patch.agent_joined_at = event.at;
          if (reason) patch.end_reason = reason;
          this.updateCall(patch);
        }
        this.addTimeline(event, "status", `Status: ${humanize(status ?? "changed")}${reason ? ` — ${reason}` : ""}`);
        break;
      }
      case "recording": {
        const status = str(data.status);
        const error = str(data.error);
        if (status && RECORDING_STATES.has(status)) this.updateCall({ recording_status: status });
        let text: string;
        if (typeof data.consent === "string" || typeof data.consent === "boolean") {
          text = `Recording consent: ${String(data.consent)}`;
        } else {
          const retry = data.will_retry === true ? " (will retry)" : "";
          text = `Recording: ${humanize(status ?? "updated")}${error ? ` — ${error}` : ""}${retry}`;
        }
        const bad = status === "failed" || (status !== undefined && status.endsWith("_failed"));
        this.addTimeline(event, bad ? "alert-red" : "recording", text);
        break;
      }
      case "recording_incomplete": {
        const got = num(data.duration_s);
        const expected = num(data.recorded_for_s);
        const detail = got !== undefined && expected !== undefined ? `: ${formatDuration(got)} of ${formatDuration(expected)}` : "";
        this.addTimeline(event, "alert-amber", `Recording incomplete${detail}`);
        break;
      }
      case "supervisor_action": {
        const action = str(data.action) ?? "action";
        const detail = str(data.detail);
        const reason = str(data.reason);
        const by = str(data.by);
        const shown = action === "whisper" && detail ? `Whisper: “${detail}”` : humanize(action);
        this.addTimeline(event, "supervisor", `${shown}${by ? ` · ${by}` : ""}${reason ? ` — ${reason}` : ""}`);
        if (action === "whisper" && detail) this.addNote(event, `Whisper to Sarah: ${detail}`);
        if (action === "takeover" || action === "release") this.showTakenOver(action === "takeover");
        break;
      }
      case "handoff_requested": {
        // From Sarah's tool (the customer asked) or from the call itself (agent lost, provider down).
        const who = str(data.source) === "workflow" || str(data.detail)?.includes("provider") ? "A person is needed" : "Customer asked for a human";
        this.addTimeline(event, "alert-red", `${who}${str(data.detail) ? `: ${str(data.detail)}` : ""}`);
        this.addAlert(event, "keyword", `${who}${str(data.detail) ? `: ${str(data.detail)}` : ""}`);
        break;
      }
      case "agent_alert":
        this.addTimeline(event, "alert-amber", `Agent alert: ${humanize(str(data.kind) ?? "alert")}${str(data.detail) ? ` — ${str(data.detail)}` : ""}`);
        break;
      case "agent_metrics":
        this.showMetrics(data);
        break;
      case "agent_dispatch":
        this.addTimeline(event, agentDispatchTone(data), agentDispatchText(data));
        break;
      case "customer_connection": {
        const status = str(data.status);
        const text =
          status === "reconnecting"
            ? `Customer reconnecting (waiting up to ${Math.round(num(data.grace_s) ?? 0)} s)`
            : status === "rejoined"
              ? `Customer rejoined after ${Math.round(num(data.away_s) ?? 0)} s`
              : "Customer did not come back";
        this.addTimeline(event, status === "rejoined" ? "status" : "alert-amber", text);
        if (status === "reconnecting") this.addAlert(event, "silence", "Customer reconnecting…");
        break;
      }
      default:
        this.addTimeline(event, "status", humanize(event.type));
    }
  }

  // --- transcript -------------------------------------------------------------------------

  private scrollToEnd(): void {
    const scroller = this.transcript.parentElement;
    if (!scroller) return;
    const nearBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 120;
    if (nearBottom) scroller.scrollTop = scroller.scrollHeight;
  }

  private line(kind: string, speaker: string, at: string | null, text: string, extra?: Node | false): HTMLLIElement {
    this.transcriptEmpty.hidden = true;
    return h(
      "li",
      { class: `line line-${kind}` },
      h("div", { class: "line-meta" }, h("span", { class: "line-speaker" }, speaker), h("time", {}, formatClock(at)), extra),
      h("p", { class: "line-text" }, text),
    );
  }

  private addFinal(event: CallEvent, data: Record<string, unknown>): void {
    const speaker = str(data.speaker) ?? str(event.speaker) ?? "unknown";
    const text = str(data.text) ?? str(event.text) ?? "";
    const confidence = num(data.confidence);
    const kind = speaker === "assistant" || speaker === "agent" ? "agent" : "customer";
    const li = this.line(
      kind,
      speakerName(speaker, this.call.customer_name),
      event.at ?? str(data.ended_at) ?? null,
      text,
      confidence !== undefined && confidence < 0.999 && h("span", { class: "line-conf" }, `${Math.round(confidence * 100)}%`),
    );
    li.dataset.seq = String(event.seq);
    if (data.interrupted === true) li.classList.add("interrupted");
    const pending = this.interim.get(speaker);
    if (pending) {
      pending.remove();
      this.interim.delete(speaker);
    }
    this.transcript.insertBefore(li, this.firstInterim());
    this.finalLines += 1;
    this.lineCount.textContent = String(this.finalLines);
    this.scrollToEnd();
  }

  private firstInterim(): HTMLElement | null {
    return this.transcript.querySelector<HTMLElement>(".line-interim");
  }

  private showInterim(event: CallEvent): void {
    const data = isRecord(event.data) ? event.data : (event as unknown as Record<string, unknown>);
    const speaker = str(data.speaker) ?? "customer";
    const text = str(data.text) ?? "";
    let el = this.interim.get(speaker);
    if (!text) {
      el?.remove();
      this.interim.delete(speaker);
      return;
    }
    if (!el) {
      el = this.line("interim", `${speakerName(speaker, this.call.customer_name)} · speaking`, event.at, "");
      this.interim.set(speaker, el);
      this.transcript.appendChild(el);
    }
    const p = el.querySelector(".line-text");
    if (p) p.textContent = text;
    this.scrollToEnd();
  }

  private addAlert(event: CallEvent, kind: "silence" | "keyword", text: string): void {
    const li = this.line(`alert line-${kind}`, kind === "silence" ? "Silence alert" : "Keyword alert", event.at, text);
    li.dataset.seq = String(event.seq);
    this.transcript.insertBefore(li, this.firstInterim());
    this.scrollToEnd();
  }

  private addNote(event: CallEvent, text: string): void {
    const li = this.line("note", "Supervisor", event.at, text);
    this.transcript.insertBefore(li, this.firstInterim());
    this.scrollToEnd();
  }

  private addTimeline(event: CallEvent, tone: string, text: string): void {
    this.timeline.prepend(
      h("li", { class: `tl tl-${tone}` }, h("time", {}, formatClock(event.at)), h("span", {}, text)),
    );
  }

  private showMetrics(data: Record<string, unknown>): void {
    const fmt = (v: unknown) => (num(v) !== undefined ? `${(num(v)! * 1000).toFixed(0)} ms` : "—");
    clear(this.metrics);
    this.metrics.append(
      h("dt", {}, "STT delay"),
      h("dd", {}, fmt(data.stt_delay_s)),
      h("dt", {}, "End of utterance"),
      h("dd", {}, fmt(data.end_of_utterance_delay_s)),
      h("dt", {}, "LLM time to first token"),
      h("dd", {}, fmt(data.time_to_first_token_s)),
      h("dt", {}, "TTS time to first byte"),
      h("dd", {}, fmt(data.tts_ttfb_s ?? data.time_to_first_audio_s)),
      h("dt", {}, "End-to-end (customer waits)"),
      h("dd", {}, fmt(data.end_to_end_latency_s)),
    );
  }

  // --- recording --------------------------------------------------------------------------

  private renderRecording(): void {
    const status = this.call.recording_status;
    clear(this.recordingBody);
    if (status === "stored") {
      this.recordingBody.append(h("p", { class: "muted" }, "Loading the recording…"));
      void this.loadRecording();
      return;
    }
    const refresh = h(
      "button",
      { type: "button", class: "btn btn-ghost btn-sm", id: "recording-refresh", onclick: () => void this.loadRecording() },
      icon(ICONS.refresh),
      "Check again",
    );
    const messages: Record<string, string> = {
      none: this.call.live ? "Recording starts when Sarah joins the call." : "This call was not recorded.",
      recording: "Recording in progress.",
      stopping: "Recording is being finalised by LiveKit.",
      uploading: "Uploading to storage…",
      failed: "The recording pipeline failed. Ops can replay it; nothing is lost while LiveKit keeps the file.",
    };
    this.recordingBody.append(
      h("p", { class: `rec-state rec-${status}` }, messages[status] ?? `Recording: ${humanize(status)}`),
    );
    const actions = h("div", { class: "action-row" });
    if (status === "failed") {
      actions.append(
        h(
          "button",
          { type: "button", class: "btn btn-primary btn-sm", id: "retry-recording", onclick: () => void this.retryRecording() },
          icon(ICONS.refresh),
          "Retry recording",
        ),
      );
    }
    if (!this.call.live) actions.append(refresh);
    if (actions.childElementCount) this.recordingBody.append(actions);
  }

  private async loadRecording(): Promise<void> {
    this.recordingLoaded = true;
    let link: RecordingLink;
    try {
      link = await api<RecordingLink>("GET", `/api/calls/${encodeURIComponent(this.callId)}/recording`);
    } catch (err) {
      clear(this.recordingBody);
      if (err instanceof ApiError && err.status === 409) {
        this.recordingBody.append(h("p", { class: "rec-state", id: "recording-not-stored" }, `Not stored yet. ${err.message}`));
      } else {
        this.recordingBody.append(h("p", { class: "rec-state rec-failed" }, `Could not load the recording: ${errorText(err)}`));
      }
      this.recordingBody.append(
        h("button", { type: "button", class: "btn btn-ghost btn-sm", onclick: () => void this.loadRecording() }, icon(ICONS.refresh), "Check again"),
      );
      return;
    }
    clear(this.recordingBody);
    const audio = h("audio", { controls: true, preload: "metadata", src: link.url, id: "recording-audio" });
    this.recordingBody.append(
      audio,
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Duration"),
        h("dd", {}, formatDuration(link.duration_s)),
        h("dt", {}, "Size"),
        h("dd", {}, formatBytes(link.size_bytes)),
        h("dt", {}, "SHA-256"),
        h("dd", { class: "mono sha", title: link.sha256 }, `${link.sha256.slice(0, 16)}…`),
        h("dt", {}, "Link expires"),
        h("dd", {}, formatDateTime(link.expires_at)),
      ),
      ...(link.incomplete
        ? [h("p", { class: "rec-state rec-failed" }, "Incomplete: LiveKit ended the egress early; this is what it delivered.")]
        : []),
      h(
        "a",
        { class: "btn btn-secondary btn-sm", href: link.url, download: `call-${this.callId}.ogg`, id: "recording-download" },
        icon(ICONS.download),
        "Download",
      ),
    );
  }

  private async retryRecording(): Promise<void> {
    try {
      await api<Accepted>("POST", `/api/recordings/${encodeURIComponent(this.callId)}/retry`, {});
      toast("Recording pipeline restarted.", "success");
      this.updateCall({ recording_status: "uploading" });
    } catch (err) {
      toast(`Retry failed: ${errorText(err)}`, "error");
    }
  }

  // --- actions ----------------------------------------------------------------------------

  private async endCall(reason: string): Promise<void> {
    const confirm = this.endForm.querySelector<HTMLButtonElement>("button[type=submit]");
    if (confirm) confirm.disabled = true;
    try {
      const result = await api<Accepted>(
        "POST",
        `/api/calls/${encodeURIComponent(this.callId)}/end`,
        reason ? { reason } : {},
      );
      this.endForm.hidden = true;
      toast(`Ending the call (${humanize(result.status)}).`, "success");
      this.updateCall({ status: ACTIVE.has(result.status) || result.status === "completed" ? result.status : "ending" });
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
      await api<Accepted>("POST", `/api/calls/${encodeURIComponent(this.callId)}/whisper`, { text, id: this.whisperId.id });
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

  /** Take over from Sarah (she keeps listening) or hand the call back to her; audited by the API. */
  private async switchSpeaker(): Promise<void> {
    const action = this.takenOver ? "release" : "takeover";
    this.takeoverButton.disabled = true;
    try {
      await api<Accepted>("POST", `/api/calls/${encodeURIComponent(this.callId)}/${action}`, { id: newCommandId() });
      this.showTakenOver(action === "takeover");
      toast(action === "takeover" ? "You have the call; Sarah keeps listening." : "Sarah has the call again.", "success");
    } catch (err) {
      toast(`Could not ${action === "takeover" ? "take over" : "release"}: ${errorText(err)}`, "error");
    } finally {
      this.takeoverButton.disabled = !this.call.live;
    }
  }

  private showTakenOver(on: boolean): void {
    this.takenOver = on;
    this.takeoverButton.textContent = on ? "Release to Sarah" : "Take over";
    this.takeoverButton.setAttribute("aria-pressed", String(on));
  }

  private renderMonitorIdle(note?: string): void {
    clear(this.monitorBody);
    this.monitorBody.append(
      h("p", { class: "muted" }, "Listen in without being heard or seen: a hidden, listen-only seat in the call's room."),
    );
    if (note) this.monitorBody.append(h("p", { class: "rec-state rec-failed", id: "monitor-error" }, note));
  }

  private async startMonitor(): Promise<void> {
    if (this.monitor) return;
    this.monitorButton.disabled = true;
    let grant: LiveKitGrant;
    try {
      grant = await api<LiveKitGrant>("POST", `/api/calls/${encodeURIComponent(this.callId)}/monitor`, {});
    } catch (err) {
      this.monitorButton.disabled = !this.call.live;
      this.renderMonitorIdle(`Monitor refused: ${errorText(err)}`);
      return;
    }
    clear(this.monitorBody);
    const state = h("p", { class: "monitor-state", id: "monitor-state" }, "Connecting audio…");
    const stop = h(
      "button",
      { type: "button", class: "btn btn-secondary btn-sm", id: "monitor-stop", onclick: () => void this.stopMonitor() },
      icon(ICONS.mute),
      "Stop listening",
    );
    this.monitorBody.append(
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
    const container = document.getElementById("monitor-audio") ?? this.monitorBody;
    try {
      this.monitor = await joinRoom({
        url: grant.livekit_url,
        token: grant.token,
        publishMicrophone: false,
        audioContainer: container,
        callbacks: {
          onDisconnected: () => {
            this.monitor = null;
            this.renderMonitorIdle("Monitoring ended: the room closed.");
            this.monitorButton.disabled = !this.call.live;
          },
          onAudioBlocked: (blocked) => {
            state.textContent = blocked ? "Click anywhere to allow audio playback." : "Listening live.";
            if (blocked) document.addEventListener("click", () => void this.monitor?.startAudio(), { once: true });
          },
        },
      });
      state.textContent = "Listening live.";
      state.classList.add("on");
    } catch (err) {
      this.monitor = null;
      state.textContent = `Could not connect audio: ${describeError(err)}`;
      state.classList.add("error");
      state.id = "monitor-error";
      this.monitorButton.disabled = !this.call.live;
    }
  }

  private async stopMonitor(): Promise<void> {
    const m = this.monitor;
    this.monitor = null;
    await m?.disconnect();
    this.renderMonitorIdle();
    this.monitorButton.disabled = !this.call.live;
  }
}

function newCommandId(): string {
  return `dash-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
}

function agentDispatchTone(data: Record<string, unknown>): string {
  const status = str(data.status);
  return status === "agent_lost" || status === "dispatch_failed" ? "alert-amber" : "status";
}

function agentDispatchText(data: Record<string, unknown>): string {
  const status = str(data.status);
  const attempt = num(data.attempt);
  const of = num(data.of);
  const n = attempt !== undefined ? ` (attempt ${attempt}${of !== undefined ? ` of ${of}` : ""})` : "";
  if (status === "agent_lost") return "Sarah dropped off: dispatching a new agent";
  if (status === "agent_replaced") return "A new agent took over the call";
  if (status === "dispatch_failed") return `Agent dispatch failed${n}${str(data.error) ? ` — ${str(data.error)}` : ""}`;
  const why = str(data.reason) === "room_created" ? "Agent dispatched" : str(data.reason) === "agent_lost" ? "Replacement agent dispatched" : "No agent yet: dispatched again";
  return `${why}${n}`;
}
