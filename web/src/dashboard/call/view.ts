/**
 * One call: a snapshot, then every stored event and live interim lines from
 * `WS /ws/calls/{id}?after=<seq>`. The highest `seq` seen goes into `after` on every reconnect,
 * so the transcript never misses or repeats a line. The view holds the call's summary and routes
 * each event to the panels that show it; the panels (header.ts, transcript.ts, recording.ts,
 * monitor.ts, activity.ts, latency.ts) own their own DOM and REST actions.
 */

import { ApiError, isRecord, wsUrl, type CallDetail, type CallEvent, type CallSummary } from "../../shared/api";
import { clear, h } from "../../shared/dom";
import { formatClock, formatDuration, humanize } from "../../shared/format";
import { LiveSocket } from "../../shared/live";
import { api, myRoles, wsProtocols } from "../session";
import { speakerName, toast } from "../ui";
import { ActivityPanel } from "./activity";
import { AnalysisPanel } from "./analysis";
import type { Marker } from "./playback";
import { ACTIVE, errorText, num, str, type CallContext } from "./context";
import { CallHeader } from "./header";
import { LatencyPanel } from "./latency";
import { MonitorPanel } from "./monitor";
import { RecordingPanel } from "./recording";
import { ReportPanel } from "./report";
import { TranscriptPanel } from "./transcript";

const RECORDING_STATES = new Set(["none", "recording", "stopping", "uploading", "stored", "failed"]);

export class CallView {
  private call: CallSummary;
  private lastSeq = 0;
  private silenceSeen = 0;
  private keywordSeen = 0;
  private readonly socket: LiveSocket;
  private readonly tickTimer: number;
  private readonly markers: Marker[] = [];

  private readonly header: CallHeader;
  private readonly transcript: TranscriptPanel;
  private readonly recording: RecordingPanel;
  private readonly monitor: MonitorPanel;
  private readonly activity: ActivityPanel;
  private readonly latency: LatencyPanel;
  private readonly report: ReportPanel;
  private readonly analysis: AnalysisPanel;

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
    const ctx: CallContext = {
      callId,
      call: () => this.call,
      update: (partial) => this.updateCall(partial),
    };
    this.transcript = new TranscriptPanel(ctx);
    this.recording = new RecordingPanel(ctx, {
      onTime: (at, playing) => this.transcript.highlightAt(at, playing),
      onReady: (origin) => this.transcript.enableSeek((at) => this.recording.seek(at), origin),
      markers: () => this.markers,
      fallbackOriginMs: () => Date.parse(this.call.agent_joined_at ?? this.call.created_at ?? "") || Date.now(),
    });
    this.monitor = new MonitorPanel(ctx);
    this.activity = new ActivityPanel();
    this.latency = new LatencyPanel();
    this.report = new ReportPanel(ctx);
    this.analysis = new AnalysisPanel(ctx, {
      seekLine: (lineId) => this.seekLine(lineId),
      lineLabel: (lineId) => this.transcript.lineLabel(lineId),
      mayOperate: async () => (await myRoles()).some((r) => r === "ops" || r === "admin"),
    });
    this.header = new CallHeader(ctx, [this.monitor.button, this.report.button]);

    clear(container);
    container.appendChild(
      h(
        "section",
        { class: "detail", "data-call-id": callId },
        ...this.header.elements,
        this.report.element,
        this.analysis.element,
        h(
          "div",
          { class: "detail-grid" },
          this.transcript.element,
          h(
            "div",
            { class: "side" },
            this.recording.element,
            this.monitor.element,
            this.activity.element,
            this.latency.element,
          ),
        ),
      ),
    );
    this.renderHeader();
    this.recording.render();

    this.socket = new LiveSocket({
      url: () => wsUrl(`/ws/calls/${encodeURIComponent(callId)}`, { after: this.lastSeq }),
      protocols: wsProtocols,
      onMessage: (msg) => this.onMessage(msg),
      onState: (state, detail) => this.header.setSocketState(state, detail),
    });
    this.socket.start();
    this.tickTimer = window.setInterval(() => this.header.tick(), 1000);
    void this.loadDetail();
  }

  destroy(): void {
    this.socket.stop();
    window.clearInterval(this.tickTimer);
    this.monitor.destroy();
    this.header.destroy();
    this.report.destroy();
    this.analysis.destroy();
  }

  private renderHeader(): void {
    this.header.render({ silence: this.silenceSeen, keyword: this.keywordSeen, lines: this.transcript.lineCount });
    const live = this.header.isLive();
    this.monitor.setLive(live);
    this.transcript.setLive(live);
    if (this.call.status !== "unknown") this.analysis.setLive(live);
  }

  /** A line the analysis cites: shown in the transcript and, with a recording, played from. */
  private seekLine(lineId: string): boolean {
    const li = this.transcript.lineById(lineId);
    if (!li) return false;
    this.transcript.showCited(li);
    const at = Number(li.dataset.at);
    if (Number.isFinite(at)) this.recording.seek(at);
    return true;
  }

  private async loadDetail(): Promise<void> {
    try {
      const detail = await api<CallDetail>("GET", `/api/calls/${encodeURIComponent(this.callId)}`);
      this.header.setLinks(detail.links);
      this.updateCall(detail);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) this.header.showBanner(`No call ${this.callId}.`);
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
    if (merged.recording_status !== before || !this.recording.isLoaded) this.recording.render();
  }

  private onMessage(msg: Record<string, unknown>): void {
    const type = str(msg.type);
    if (type === "snapshot") {
      if (isRecord(msg.call)) this.updateCall(msg.call as unknown as Partial<CallSummary>);
      return;
    }
    if (type === "error" || type === "resync" || !type) return;
    if (type === "interim_transcript") {
      this.transcript.showInterim(msg as unknown as CallEvent);
      return;
    }
    const seq = num(msg.seq);
    if (seq !== undefined) {
      if (seq <= this.lastSeq) return; // already shown (a replay overlapping a live message)
      this.lastSeq = seq;
    }
    this.onEvent(msg as unknown as CallEvent);
  }

  /** An alert on the playback timeline. */
  private mark(event: CallEvent, tone: Marker["tone"], label: string, atMs?: number): void {
    const at = atMs ?? Date.parse(event.at ?? "");
    if (!Number.isFinite(at)) return;
    this.markers.push({ atMs: at, tone, label });
    this.recording.refreshMarkers();
  }

  private onEvent(event: CallEvent): void {
    const data = isRecord(event.data) ? event.data : {};
    const timeline = (tone: string, text: string) => this.activity.add(event, tone, text);
    switch (event.type) {
      case "final_transcript":
        this.transcript.addFinal(event, data);
        this.analysis.relabel();
        this.header.setLines(this.transcript.lineCount);
        break;
      case "silence_alert": {
        this.silenceSeen += 1;
        const secs = num(data.duration_s) ?? num(data.quiet_s) ?? num(data.duration);
        const who = data.speaker ? ` (${speakerName(data.speaker, this.call.customer_name)})` : "";
        const text = `Silence for ${secs !== undefined ? Math.round(secs) + " s" : "a while"}${who}`;
        this.transcript.addAlert(event, "silence", text);
        timeline("alert-amber", text);
        // On the timeline where the quiet began (`since`), not where the alert fired.
        const since = Date.parse(str(data.since) ?? "");
        this.mark(event, "amber", text, Number.isFinite(since) ? since : undefined);
        this.updateCall({ silence_alerts: Math.max(this.call.silence_alerts, this.silenceSeen) });
        break;
      }
      case "keyword_alert": {
        this.keywordSeen += 1;
        const words = Array.isArray(data.keywords) ? data.keywords.filter((k) => typeof k === "string") : [];
        const keyword = words.join(", ") || str(data.keyword) || "?";
        // The alert points at the line that triggered it: flag that line and quote it.
        const lineSeq = num(data.line_seq);
        const flagged = lineSeq !== undefined ? this.transcript.lineBySeq(lineSeq) : null;
        flagged?.classList.add("flagged");
        const said = str(data.text) ?? flagged?.querySelector(".line-text")?.textContent ?? undefined;
        this.transcript.addAlert(event, "keyword", `Keyword “${keyword}”${said ? `: ${said}` : ""}`);
        timeline("alert-red", `Keyword alert: ${keyword}`);
        // On the timeline where the flagged line was said, not when the alert was written.
        this.mark(event, "red", `Keyword alert: ${keyword}`, flagged?.dataset.at ? Number(flagged.dataset.at) : undefined);
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
        timeline("status", `Status: ${humanize(status ?? "changed")}${reason ? ` — ${reason}` : ""}`);
        break;
      }
      case "recording": {
        const status = str(data.status);
        const error = str(data.error);
        if (status && RECORDING_STATES.has(status)) this.updateCall({ recording_status: status });
        let text: string;
        if (typeof data.consent === "string" || typeof data.consent === "boolean") {
          text = `Recording consent: ${String(data.consent)}`;
        } else if (!status && str(data.started_at)) {
          text = `Recording clock: LiveKit started the egress at ${formatClock(str(data.started_at))}`;
        } else {
          const retry = data.will_retry === true ? " (will retry)" : "";
          text = `Recording: ${humanize(status ?? "updated")}${error ? ` — ${error}` : ""}${retry}`;
        }
        const bad = status === "failed" || (status !== undefined && status.endsWith("_failed"));
        timeline(bad ? "alert-red" : "recording", text);
        break;
      }
      case "recording_incomplete": {
        const got = num(data.duration_s);
        const expected = num(data.recorded_for_s);
        const detail = got !== undefined && expected !== undefined ? `: ${formatDuration(got)} of ${formatDuration(expected)}` : "";
        timeline("alert-amber", `Recording incomplete${detail}`);
        break;
      }
      case "supervisor_action": {
        const action = str(data.action) ?? "action";
        const detail = str(data.detail);
        const reason = str(data.reason);
        const by = str(data.by);
        // A refused command (its id already named another one) says what was refused and why.
        const shown = action === "whisper" && detail ? `Whisper: “${detail}”` : action === "command_refused" && detail ? `Refused: ${detail}` : humanize(action);
        timeline("supervisor", `${shown}${by ? ` · ${by}` : ""}${reason ? ` — ${reason}` : ""}`);
        if (action === "whisper" && detail) this.transcript.addNote(event, `Whisper to Sarah: ${detail}`);
        if (action === "takeover" || action === "release") this.header.showTakenOver(action === "takeover");
        break;
      }
      case "handoff_requested": {
        // From Sarah's tool (the customer asked) or from the call itself (agent lost, provider down).
        const who = str(data.source) === "workflow" || str(data.detail)?.includes("provider") ? "A person is needed" : "Customer asked for a human";
        const why = `${who}${str(data.detail) ? `: ${str(data.detail)}` : ""}`;
        this.mark(event, "red", who);
        timeline("alert-red", why);
        this.transcript.addAlert(event, "keyword", why);
        break;
      }
      case "agent_dispatch":
        timeline(agentDispatchTone(data), agentDispatchText(data));
        break;
      case "customer_connection": {
        const status = str(data.status);
        const text =
          status === "reconnecting"
            ? `Customer reconnecting (waiting up to ${Math.round(num(data.grace_s) ?? 0)} s)`
            : status === "rejoined"
              ? `Customer rejoined after ${Math.round(num(data.away_s) ?? 0)} s`
              : "Customer did not come back";
        timeline(status === "rejoined" ? "status" : "alert-amber", text);
        if (status === "reconnecting") this.transcript.addAlert(event, "silence", "Customer reconnecting…");
        break;
      }
      case "customer_rejoined":
        // A rejoin proof exchanged while the call still saw the customer in: maybe not them.
        timeline(
          data.while_connected ? "alert-amber" : "status",
          data.while_connected ? "Rejoin token issued while the customer was still connected" : "Customer got a new token to rejoin",
        );
        break;
      case "agent_alert":
        timeline("alert-amber", `Agent alert: ${humanize(str(data.kind) ?? "alert")}${str(data.detail) ? ` — ${str(data.detail)}` : ""}`);
        break;
      case "agent_metrics":
        this.latency.add(data);
        break;
      default:
        timeline("status", humanize(event.type));
    }
  }
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
