/**
 * Playback on the call's clock. A call's recording is an ordered list of segments (one per
 * egress), each with its time zero; a position is an absolute instant (ms since the epoch), the
 * same clock as transcript lines and alerts, so "where the audio is" and "which line was said"
 * are one comparison. Segments play one after another; a seek lands in whichever segment holds
 * the instant (or the next one, when the instant falls in a gap between egresses).
 */

import { h } from "../../shared/dom";
import { formatDuration } from "../../shared/format";

export interface Segment {
  url: string;
  /** Time zero of this segment on the call's clock (ms since the epoch). */
  startMs: number;
  durationS: number;
}

export interface Marker {
  atMs: number;
  tone: "amber" | "red";
  label: string;
}

const KEY_STEP_S = 5;

export class Player {
  readonly element: HTMLElement;
  readonly audio: HTMLAudioElement;
  private index = 0;
  private readonly bar = h("div", { class: "scrub-fill" });
  private readonly markerLayer = h("div", { class: "scrub-markers" });
  private readonly scrubber: HTMLElement;
  private readonly clock = h("span", { class: "scrub-clock mono", id: "playback-clock" }, "0:00");
  private markers: Marker[] = [];

  constructor(
    private readonly segments: Segment[],
    private readonly onTime: (atMs: number, playing: boolean) => void,
  ) {
    this.audio = h("audio", { controls: true, preload: "auto", src: segments[0]!.url, id: "recording-audio" });
    this.audio.dataset.segment = "0";
    this.audio.addEventListener("timeupdate", () => this.report());
    this.audio.addEventListener("seeked", () => this.report());
    this.audio.addEventListener("ended", () => void this.next());
    this.scrubber = h(
      "div",
      {
        class: "scrubber",
        id: "playback-scrubber",
        role: "slider",
        tabindex: 0,
        "aria-label": "Position in the call",
        "aria-valuemin": 0,
        "aria-valuemax": Math.round(this.spanMs() / 1000),
        "aria-valuenow": 0,
        "aria-valuetext": "0:00",
      },
      this.bar,
    );
    this.scrubber.addEventListener("click", (event) => {
      const box = this.scrubber.getBoundingClientRect();
      const fraction = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
      void this.seek(this.originMs() + fraction * this.spanMs());
    });
    this.scrubber.addEventListener("keydown", (event) => {
      const step = event.key === "ArrowRight" ? KEY_STEP_S : event.key === "ArrowLeft" ? -KEY_STEP_S : 0;
      if (event.key === "Home") void this.seek(this.originMs());
      else if (event.key === "End") void this.seek(this.originMs() + this.spanMs());
      else if (step) void this.seek(this.position() + step * 1000);
      else return;
      event.preventDefault();
    });
    this.element = h(
      "div",
      { class: "player" },
      this.audio,
      h("div", { class: "scrub-row" }, h("div", { class: "scrub-track" }, this.scrubber, this.markerLayer), this.clock),
      segments.length > 1 ? h("p", { class: "muted small", id: "playback-segments" }, `${segments.length} segments, played in order.`) : null,
    );
  }

  originMs(): number {
    return this.segments[0]!.startMs;
  }

  /** From the first segment's start to the last one's end (gaps between egresses included). */
  spanMs(): number {
    const last = this.segments[this.segments.length - 1]!;
    return Math.max(1, last.startMs + last.durationS * 1000 - this.originMs());
  }

  /** The instant being played, on the call's clock. */
  position(): number {
    return this.segments[this.index]!.startMs + this.audio.currentTime * 1000;
  }

  setMarkers(markers: Marker[]): void {
    this.markers = markers;
    this.markerLayer.replaceChildren(
      ...markers.map((m) => {
        const offset = (m.atMs - this.originMs()) / this.spanMs();
        const at = formatDuration((m.atMs - this.originMs()) / 1000);
        return h(
          "button",
          {
            type: "button",
            class: `scrub-marker marker-${m.tone}`,
            style: `left: ${(Math.min(1, Math.max(0, offset)) * 100).toFixed(2)}%`,
            title: `${at} · ${m.label}`,
            "aria-label": `Play from ${at}: ${m.label}`,
            "data-at": String(m.atMs),
            onclick: () => void this.seek(m.atMs),
          },
        );
      }),
    );
  }

  get markerCount(): number {
    return this.markers.length;
  }

  /** Move to an instant of the call (clamped to the recording), in whichever segment holds it. */
  async seek(atMs: number): Promise<void> {
    let index = 0;
    for (let i = 0; i < this.segments.length; i++) if (this.segments[i]!.startMs <= atMs) index = i;
    let seg = this.segments[index]!;
    if (atMs > seg.startMs + seg.durationS * 1000 && index + 1 < this.segments.length) {
      index += 1; // in the gap between two egresses: the next thing heard
      seg = this.segments[index]!;
    }
    const offsetS = Math.min(seg.durationS, Math.max(0, (atMs - seg.startMs) / 1000));
    await this.load(index);
    this.audio.currentTime = offsetS;
    this.report();
  }

  private async load(index: number): Promise<void> {
    if (index === this.index) return;
    const playing = !this.audio.paused;
    this.index = index;
    this.audio.dataset.segment = String(index);
    this.audio.src = this.segments[index]!.url;
    if (this.audio.readyState < HTMLMediaElement.HAVE_METADATA) {
      await new Promise<void>((resolve) => this.audio.addEventListener("loadedmetadata", () => resolve(), { once: true }));
    }
    if (playing) void this.audio.play();
  }

  private async next(): Promise<void> {
    if (this.index + 1 >= this.segments.length) return;
    await this.load(this.index + 1);
    this.audio.currentTime = 0;
    void this.audio.play();
  }

  private report(): void {
    const at = this.position();
    const offset = at - this.originMs();
    const fraction = Math.min(1, Math.max(0, offset / this.spanMs()));
    this.bar.style.width = `${(fraction * 100).toFixed(2)}%`;
    const text = formatDuration(offset / 1000);
    this.clock.textContent = text;
    this.scrubber.setAttribute("aria-valuenow", String(Math.round(offset / 1000)));
    this.scrubber.setAttribute("aria-valuetext", text);
    this.onTime(at, !this.audio.paused);
  }
}
