/**
 * The recording: its pipeline state while it is made, then (once stored) a player on the call's
 * clock (playback.ts) with short-lived presigned links, its facts and a download; a failed
 * pipeline can be retried here.
 */

import { ApiError, type Accepted, type RecordingLink } from "../../shared/api";
import { clear, h, icon, ICONS } from "../../shared/dom";
import { formatBytes, formatDateTime, formatDuration, humanize } from "../../shared/format";
import { api } from "../session";
import { toast } from "../ui";
import { errorText, panelSection, type CallContext } from "./context";
import { Player, type Marker, type Segment } from "./playback";

export interface PlaybackHooks {
  /** The audio moved: `atMs` is the instant heard, on the call's clock. */
  onTime(atMs: number, playing: boolean): void;
  /** A player is ready: lines may now seek it (`originMs`: the recording's time zero). */
  onReady(originMs: number): void;
  markers(): Marker[];
  /** Time zero when the API knows no start for the recording (ms since the epoch). */
  fallbackOriginMs(): number;
}

const CLOCKS: Record<string, string> = {
  egress: "LiveKit egress start",
  event: "egress start seen by the workflow",
  none: "unknown: call start assumed",
};

export class RecordingPanel {
  readonly element: HTMLElement;
  private readonly body = h("div", { class: "recording-body", id: "recording-panel" });
  private loaded = false;
  private player: Player | null = null;

  constructor(
    private readonly ctx: CallContext,
    private readonly hooks: PlaybackHooks,
  ) {
    this.element = panelSection("Recording", this.body);
  }

  /** Whether the stored recording was asked for yet (the first render after load always does). */
  get isLoaded(): boolean {
    return this.loaded;
  }

  /** Play from an instant of the call; false when there is no player (yet). */
  seek(atMs: number): boolean {
    if (!this.player) return false;
    void this.player.seek(atMs);
    return true;
  }

  /** Redraw the alert markers on the player's timeline (an alert arrived). */
  refreshMarkers(): void {
    this.player?.setMarkers(this.hooks.markers());
  }

  render(): void {
    this.player = null;
    const call = this.ctx.call();
    const status = call.recording_status;
    clear(this.body);
    if (status === "stored") {
      this.body.append(h("p", { class: "muted" }, "Loading the recording…"));
      void this.load();
      return;
    }
    const refresh = h(
      "button",
      { type: "button", class: "btn btn-ghost btn-sm", id: "recording-refresh", onclick: () => void this.load() },
      icon(ICONS.refresh),
      "Check again",
    );
    const messages: Record<string, string> = {
      none: call.live ? "Recording starts when Sarah joins the call." : "This call was not recorded.",
      recording: "Recording in progress.",
      stopping: "Recording is being finalised by LiveKit.",
      uploading: "Uploading to storage…",
      failed: "The recording pipeline failed. Ops can replay it; nothing is lost while LiveKit keeps the file.",
    };
    this.body.append(h("p", { class: `rec-state rec-${status}` }, messages[status] ?? `Recording: ${humanize(status)}`));
    const actions = h("div", { class: "action-row" });
    if (status === "failed") {
      actions.append(
        h(
          "button",
          { type: "button", class: "btn btn-primary btn-sm", id: "retry-recording", onclick: () => void this.retry() },
          icon(ICONS.refresh),
          "Retry recording",
        ),
      );
    }
    if (!call.live) actions.append(refresh);
    if (actions.childElementCount) this.body.append(actions);
  }

  private async load(): Promise<void> {
    this.loaded = true;
    const callId = this.ctx.callId;
    let link: RecordingLink;
    try {
      link = await api<RecordingLink>("GET", `/api/calls/${encodeURIComponent(callId)}/recording`);
    } catch (err) {
      clear(this.body);
      if (err instanceof ApiError && err.status === 409) {
        this.body.append(h("p", { class: "rec-state", id: "recording-not-stored" }, `Not stored yet. ${err.message}`));
      } else {
        this.body.append(h("p", { class: "rec-state rec-failed" }, `Could not load the recording: ${errorText(err)}`));
      }
      this.body.append(
        h("button", { type: "button", class: "btn btn-ghost btn-sm", onclick: () => void this.load() }, icon(ICONS.refresh), "Check again"),
      );
      return;
    }
    clear(this.body);
    const player = new Player(this.segmentsOf(link), (at, playing) => this.hooks.onTime(at, playing));
    this.player = player;
    player.setMarkers(this.hooks.markers());
    this.body.append(
      player.element,
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
        h("dt", {}, "Clock"),
        h("dd", { id: "playback-clock-source" }, CLOCKS[link.clock ?? "none"] ?? "unknown"),
      ),
      ...(link.incomplete
        ? [h("p", { class: "rec-state rec-failed" }, "Incomplete: LiveKit ended the egress early; this is what it delivered.")]
        : []),
      h(
        "a",
        { class: "btn btn-secondary btn-sm", href: link.url, download: `call-${callId}.ogg`, id: "recording-download" },
        icon(ICONS.download),
        "Download",
      ),
    );
    this.hooks.onReady(player.originMs());
  }

  /** The segments on the call's clock; today's single-file answer is one segment. */
  private segmentsOf(link: RecordingLink): Segment[] {
    const given = link.segments?.length
      ? link.segments
      : [{ url: link.url, duration_s: link.duration_s, started_at: link.started_at ?? null }];
    const out: Segment[] = [];
    for (const seg of given) {
      const start = seg.started_at ? Date.parse(seg.started_at) : NaN;
      const previous = out[out.length - 1];
      // Unknown start: right after the previous segment, or the call's own start for the first.
      const startMs = Number.isFinite(start)
        ? start
        : previous
          ? previous.startMs + previous.durationS * 1000
          : this.hooks.fallbackOriginMs();
      out.push({ url: seg.url, startMs, durationS: seg.duration_s });
    }
    return out;
  }

  private async retry(): Promise<void> {
    try {
      await api<Accepted>("POST", `/api/recordings/${encodeURIComponent(this.ctx.callId)}/retry`, {});
      toast("Recording pipeline restarted.", "success");
      this.ctx.update({ recording_status: "uploading" });
    } catch (err) {
      toast(`Retry failed: ${errorText(err)}`, "error");
    }
  }
}
