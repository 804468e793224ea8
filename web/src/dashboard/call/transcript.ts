/**
 * The transcript: final lines in the order of their `seq`, interim lines (one per speaker, never
 * stored) below them, alerts and supervisor notes inline where they happened.
 */

import type { CallEvent } from "../../shared/api";
import { isRecord } from "../../shared/api";
import { h } from "../../shared/dom";
import { formatClock, formatDuration } from "../../shared/format";
import { speakerName } from "../ui";
import { num, str, type CallContext } from "./context";

export class TranscriptPanel {
  readonly element: HTMLElement;
  private readonly list = h("ol", { class: "transcript", id: "transcript", "aria-live": "polite" });
  private readonly empty = h("p", { class: "transcript-empty" }, "Waiting for the conversation to start…");
  private readonly title = h("h2", {}, "Live transcript");
  private readonly interim = new Map<string, HTMLElement>();
  private finals = 0;
  private playing: HTMLElement | null = null;
  private seek: ((atMs: number) => void) | null = null;
  private originMs = 0;

  constructor(private readonly ctx: CallContext) {
    this.element = h(
      "section",
      { class: "panel transcript-panel" },
      h("header", { class: "panel-head" }, this.title),
      h("div", { class: "transcript-scroll", id: "transcript-scroll" }, this.empty, this.list),
    );
  }

  /** Final lines shown so far. */
  get lineCount(): number {
    return this.finals;
  }

  setLive(live: boolean): void {
    this.title.textContent = live ? "Live transcript" : "Transcript";
    this.empty.textContent = live ? "Waiting for the conversation to start…" : "No transcript was recorded for this call.";
  }

  /** The line with this `seq`, e.g. the one a keyword alert points at. */
  lineBySeq(seq: number): HTMLElement | null {
    return this.list.querySelector<HTMLElement>(`li[data-seq="${seq}"]`);
  }

  /** The final line with this id (what the analysis's evidence cites). */
  lineById(lineId: string): HTMLElement | null {
    return this.list.querySelector<HTMLElement>(`li[data-line-id="${CSS.escape(lineId)}"]`);
  }

  /** A cited line as its button names it: speaker and position ("Sarah, line 3"). */
  lineLabel(lineId: string): string | null {
    const li = this.lineById(lineId);
    if (!li) return null;
    const finals = [...this.list.querySelectorAll<HTMLElement>("li[data-line-id]")];
    const speaker = li.querySelector(".line-speaker")?.textContent ?? "line";
    return `${speaker}, line ${finals.indexOf(li) + 1}`;
  }

  /** Show a cited line: scrolled to and marked until another is cited. */
  showCited(li: HTMLElement): void {
    for (const other of this.list.querySelectorAll(".cited")) other.classList.remove("cited");
    li.classList.add("cited");
    li.scrollIntoView({ block: "center" });
  }

  addFinal(event: CallEvent, data: Record<string, unknown>): void {
    const speaker = str(data.speaker) ?? str(event.speaker) ?? "unknown";
    const text = str(data.text) ?? str(event.text) ?? "";
    const confidence = num(data.confidence);
    const kind = speaker === "assistant" || speaker === "agent" ? "agent" : "customer";
    const li = this.line(
      kind,
      speakerName(speaker, this.ctx.call().customer_name),
      str(data.started_at) ?? event.at ?? str(data.ended_at) ?? null, // when it was said
      text,
      confidence !== undefined && confidence < 0.999 && h("span", { class: "line-conf" }, `${Math.round(confidence * 100)}%`),
    );
    li.dataset.seq = String(event.seq);
    li.dataset.lineId = str(data.id) ?? String(event.seq); // what an analysis cites
    // When it was said, on the recording's clock: the agent's own start of speech, else arrival.
    const at = Date.parse(str(data.started_at) ?? event.at ?? "");
    if (Number.isFinite(at)) {
      li.dataset.at = String(at);
      if (this.seek) this.makeSeekable(li);
    }
    if (data.interrupted === true) li.classList.add("interrupted");
    const pending = this.interim.get(speaker);
    if (pending) {
      pending.remove();
      this.interim.delete(speaker);
    }
    this.list.insertBefore(li, this.firstInterim());
    this.finals += 1;
    this.scrollToEnd();
  }

  showInterim(event: CallEvent): void {
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
      el = this.line("interim", `${speakerName(speaker, this.ctx.call().customer_name)} · speaking`, event.at, "");
      this.interim.set(speaker, el);
      this.list.appendChild(el);
    }
    const p = el.querySelector(".line-text");
    if (p) p.textContent = text;
    this.scrollToEnd();
  }

  /** Each line gets a button that plays the recording from where it was said (a click anywhere
   * on the line does the same); `originMs` is the recording's time zero, for the button's label. */
  enableSeek(seek: (atMs: number) => void, originMs: number): void {
    if (this.seek) return;
    this.seek = seek;
    this.originMs = originMs;
    for (const li of this.list.querySelectorAll<HTMLElement>("li[data-at]")) this.makeSeekable(li);
    this.list.addEventListener("click", (event) => {
      const li = (event.target as HTMLElement | null)?.closest<HTMLElement>("li[data-at]");
      if (li && this.seek) this.seek(Number(li.dataset.at));
    });
  }

  /** Highlight the line being heard at `atMs` (the last one that started by then). */
  highlightAt(atMs: number, follow: boolean): void {
    let current: HTMLElement | null = null;
    for (const li of this.list.querySelectorAll<HTMLElement>("li[data-at]")) {
      if (Number(li.dataset.at) <= atMs) current = li;
      else break;
    }
    if (current === this.playing) return;
    this.playing?.classList.remove("playing");
    this.playing?.removeAttribute("aria-current");
    this.playing = current;
    if (!current) return;
    current.classList.add("playing");
    current.setAttribute("aria-current", "true");
    if (follow) current.scrollIntoView({ block: "nearest" });
  }

  private makeSeekable(li: HTMLElement): void {
    const at = Number(li.dataset.at);
    const clock = formatDuration(Math.max(0, (at - this.originMs) / 1000));
    const button = h("button", { type: "button", class: "line-seek", title: "Play the recording from here" }, `▶ ${clock}`);
    button.setAttribute("aria-label", `Play from ${clock}`);
    li.querySelector(".line-meta")?.appendChild(button);
  }

  addAlert(event: CallEvent, kind: "silence" | "keyword", text: string): void {
    const li = this.line(`alert line-${kind}`, kind === "silence" ? "Silence alert" : "Keyword alert", event.at, text);
    li.dataset.seq = String(event.seq);
    this.list.insertBefore(li, this.firstInterim());
    this.scrollToEnd();
  }

  addNote(event: CallEvent, text: string): void {
    const li = this.line("note", "Supervisor", event.at, text);
    this.list.insertBefore(li, this.firstInterim());
    this.scrollToEnd();
  }

  private scrollToEnd(): void {
    const scroller = this.list.parentElement;
    if (!scroller) return;
    const nearBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 120;
    if (nearBottom) scroller.scrollTop = scroller.scrollHeight;
  }

  private line(kind: string, speaker: string, at: string | null, text: string, extra?: Node | false): HTMLLIElement {
    this.empty.hidden = true;
    return h(
      "li",
      { class: `line line-${kind}` },
      h("div", { class: "line-meta" }, h("span", { class: "line-speaker" }, speaker), h("time", {}, formatClock(at)), extra),
      h("p", { class: "line-text" }, text),
    );
  }

  private firstInterim(): HTMLElement | null {
    return this.list.querySelector<HTMLElement>(".line-interim");
  }
}
