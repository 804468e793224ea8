/**
 * Agent latency per turn, from `agent_metrics` events: for every labelled figure an event carries
 * (any number under a key ending in `_s`, or in a nested `figures` map: STT delay, end of
 * utterance, LLM time to first token, TTS time to first byte, end to end…), the call's p50 and p95 and a
 * sparkline of its value turn by turn. The same reading as the report's (api/domain/report.py).
 */

import { isRecord } from "../../shared/api";
import { h } from "../../shared/dom";
import { humanize } from "../../shared/format";
import { panelSection } from "./context";

// Figure names (a key minus its `_s` unit suffix) as supervisors read them; as api/domain/report.py.
const LABELS: Record<string, string> = {
  stt_delay: "STT delay",
  end_of_utterance_delay: "End of utterance",
  transcription_delay: "Transcription delay",
  time_to_first_token: "LLM time to first token",
  llm_ttft: "LLM time to first token",
  tts_ttfb: "TTS time to first byte",
  time_to_first_audio: "TTS time to first byte",
  end_to_end_latency: "End to end (customer waits)",
  end_to_end: "End to end",
  e2e: "End to end",
};

export function figureLabel(key: string): string {
  const base = key.replace(/_s$/, "");
  return LABELS[base] ?? humanize(base);
}

/** The labelled figures (seconds) of one `agent_metrics` event. */
export function turnFigures(data: Record<string, unknown>): Map<string, number> {
  const out = new Map<string, number>();
  const nested = isRecord(data.figures) ? data.figures : null;
  const take = (key: string, value: unknown, any: boolean) => {
    if (typeof value === "number" && Number.isFinite(value) && (any || key.endsWith("_s"))) out.set(key, value);
  };
  for (const [key, value] of Object.entries(data)) take(key, value, false);
  if (nested) for (const [key, value] of Object.entries(nested)) take(key, value, true);
  return out;
}

/** Nearest-rank percentile of a non-empty list. */
export function percentile(values: number[], p: number): number {
  const ordered = [...values].sort((a, b) => a - b);
  return ordered[Math.max(1, Math.ceil((p / 100) * ordered.length)) - 1]!;
}

const ms = (seconds: number) => `${Math.round(seconds * 1000)} ms`;

function sparkline(values: number[], label: string): SVGSVGElement {
  const ns = "http://www.w3.org/2000/svg";
  const width = 96;
  const height = 24;
  const max = Math.max(...values, 1e-9);
  const step = values.length > 1 ? width / (values.length - 1) : 0;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`);
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "spark");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${label} per turn: ${values.map(ms).join(", ")}`);
  const line = document.createElementNS(ns, values.length > 1 ? "polyline" : "circle");
  if (values.length > 1) line.setAttribute("points", points.join(" "));
  else {
    line.setAttribute("cx", "2");
    line.setAttribute("cy", points[0]!.split(",")[1]!);
    line.setAttribute("r", "2");
  }
  svg.appendChild(line);
  return svg;
}

export class LatencyPanel {
  readonly element: HTMLElement;
  private readonly body = h("div", { class: "latency", id: "agent-metrics" });
  private readonly series = new Map<string, number[]>();
  private turns = 0;

  constructor() {
    this.element = panelSection("Agent latency", this.body);
    this.render();
  }

  /** One turn's `agent_metrics` event. */
  add(data: Record<string, unknown>): void {
    const figures = turnFigures(data);
    if (!figures.size) return;
    this.turns += 1;
    for (const [key, value] of figures) {
      const list = this.series.get(key) ?? [];
      list.push(value);
      this.series.set(key, list);
    }
    this.render();
  }

  private render(): void {
    if (!this.turns) {
      this.body.replaceChildren(h("p", { class: "muted" }, "No measurements yet."));
      return;
    }
    const rows = [...this.series].map(([key, values]) =>
      h(
        "tr",
        { "data-figure": key },
        h("th", { scope: "row" }, figureLabel(key)),
        h("td", { class: "mono" }, ms(percentile(values, 50))),
        h("td", { class: "mono" }, ms(percentile(values, 95))),
        h("td", {}, sparkline(values, figureLabel(key))),
      ),
    );
    this.body.replaceChildren(
      h("p", { class: "muted small", id: "latency-turns" }, `${this.turns} turn${this.turns === 1 ? "" : "s"} measured`),
      h(
        "table",
        { class: "latency-table" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Figure"), h("th", { scope: "col" }, "p50"), h("th", { scope: "col" }, "p95"), h("th", { scope: "col" }, "Per turn"))),
        h("tbody", {}, ...rows),
      ),
    );
  }
}
