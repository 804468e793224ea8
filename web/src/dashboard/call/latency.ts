/** The agent's latest latency figures, from `agent_metrics` events. */

import { clear, h } from "../../shared/dom";
import { num, panelSection } from "./context";

export class LatencyPanel {
  readonly element: HTMLElement;
  private readonly metrics = h("dl", { class: "metrics", id: "agent-metrics" });

  constructor() {
    this.element = panelSection("Agent latency", this.metrics);
  }

  show(data: Record<string, unknown>): void {
    const fmt = (v: unknown) => (num(v) !== undefined ? `${(num(v)! * 1000).toFixed(0)} ms` : "—");
    clear(this.metrics);
    this.metrics.append(
      h("dt", {}, "End of utterance"),
      h("dd", {}, fmt(data.end_of_utterance_delay_s)),
      h("dt", {}, "LLM first token"),
      h("dd", {}, fmt(data.time_to_first_token_s)),
      h("dt", {}, "First audio"),
      h("dd", {}, fmt(data.time_to_first_audio_s)),
    );
  }
}
