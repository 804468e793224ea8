/**
 * After the call (`GET /api/calls/{id}/analysis`): the summary, outcome, the customer's sentiment
 * with the lines where it turned, the fields the business needs, and the QA scorecard, each item
 * pass / fail / not judged with the lines that support it. A cited line seeks the recording to
 * where it was said (the view's `seekLine`, the transcript's own seek). The panel says plainly
 * which method made the analysis: a language model (`llm`) or the local method (`local`, no
 * model). Below: the webhook deliveries (attempts, last status); ops may replay one or rerun the
 * analysis. A call that ended minutes ago has its analysis on the way: the panel looks again
 * every few seconds until it lands (then "Check again" is by hand).
 */

import { ApiError, isRecord, type Accepted } from "../../shared/api";
import { clear, h, icon, ICONS } from "../../shared/dom";
import { formatDateTime, humanize } from "../../shared/format";
import { api } from "../session";
import { toast } from "../ui";
import { errorText, num, panelSection, str, type CallContext } from "./context";

type Row = Record<string, unknown>;

export interface CallAnalysis {
  call_id: string;
  status: "done" | "failed";
  method: "llm" | "local";
  outcome: string | null;
  sentiment: string | null;
  score: number | null;
  runs: number;
  analyzed_at: string | null;
  error: string | null;
  analysis: Row | null;
  deliveries: Row[];
}

export interface AnalysisHooks {
  /** Show (and play from) the transcript line with this id; false when it is not shown. */
  seekLine(lineId: string): boolean;
  /** How a cited line is named on its button (e.g. "Sarah, line 3"); null when unknown. */
  lineLabel(lineId: string): string | null;
  /** Whether the signed-in roles may rerun and replay (ops, admin). */
  mayOperate(): Promise<boolean>;
}

export const METHOD_TEXT: Record<string, string> = {
  llm: "Made by a language model (method: llm).",
  local:
    "Made by the local method, without a language model (method: local): sentiment from a lexicon, " +
    "fields from what Sarah's tools recorded, the summary quoted from the call. Items it cannot judge say so.",
};

export function scoreText(score: number | null | undefined): string {
  return typeof score === "number" ? `${Math.round(score * 100)}%` : "not scored";
}

/** The fields as label/value pairs, nested objects opened (`vehicle make`). */
function flatten(value: unknown, prefix = ""): [string, string][] {
  if (!isRecord(value)) return [[prefix, value === null || value === undefined ? "—" : Array.isArray(value) ? value.join(", ") : String(value)]];
  const out: [string, string][] = [];
  for (const [key, inner] of Object.entries(value)) out.push(...flatten(inner, prefix ? `${prefix} ${humanize(key).toLowerCase()}` : humanize(key)));
  return out.length ? out : [[prefix, "—"]];
}

export class AnalysisPanel {
  readonly element: HTMLElement;
  private readonly body = h("div", { class: "analysis-body", id: "analysis" });
  private requested = false;
  private retryTimer = 0;
  private retries = 0;

  constructor(
    private readonly ctx: CallContext,
    private readonly hooks: AnalysisHooks,
  ) {
    this.element = panelSection("After the call", this.body);
    this.element.classList.add("analysis-panel");
    this.element.id = "analysis-panel";
    this.body.append(h("p", { class: "muted" }, "The call is analysed once it has ended."));
  }

  /** The call's state changed: an ended call's analysis is fetched (once; "Check again" after). */
  setLive(live: boolean): void {
    if (live || this.requested) return;
    this.requested = true;
    void this.load();
  }

  destroy(): void {
    window.clearTimeout(this.retryTimer);
  }

  async load(): Promise<void> {
    window.clearTimeout(this.retryTimer);
    let found: CallAnalysis;
    try {
      found = await api<CallAnalysis>("GET", `/api/calls/${encodeURIComponent(this.ctx.callId)}/analysis`);
    } catch (err) {
      const none = err instanceof ApiError && err.status === 404;
      clear(this.body);
      this.body.append(
        h("p", { class: none ? "muted" : "rec-state rec-failed", id: "analysis-state" },
          none ? "No analysis yet: it runs a few seconds after a call with a conversation ends." : `Could not load the analysis: ${errorText(err)}`),
        h("div", { class: "action-row" }, this.checkAgain()),
      );
      if (none) void this.addRerun(this.body.lastElementChild as HTMLElement);
      if (none && this.justEnded() && this.retries < AUTO_CHECKS) {
        this.retries += 1; // the analysis runs a few seconds after the end: look again by itself
        this.retryTimer = window.setTimeout(() => void this.load(), AUTO_CHECK_MS);
      }
      return;
    }
    this.render(found);
  }

  /** Ended within the last few minutes: its analysis is probably on its way. */
  private justEnded(): boolean {
    const ended = Date.parse(this.ctx.call().ended_at ?? "");
    return Number.isFinite(ended) && Date.now() - ended < AUTO_CHECKS * AUTO_CHECK_MS;
  }

  private checkAgain(): HTMLButtonElement {
    return h("button", { type: "button", class: "btn btn-ghost btn-sm", id: "analysis-refresh", onclick: () => void this.load() }, icon(ICONS.refresh), "Check again");
  }

  private render(a: CallAnalysis): void {
    clear(this.body);
    const doc = a.analysis ?? {};
    const method = h("p", { class: `analysis-method method-${a.method}`, id: "analysis-method", "data-method": a.method }, METHOD_TEXT[a.method] ?? `Method: ${a.method}`);
    const actions = h("div", { class: "action-row" }, this.checkAgain());
    if (a.status === "failed") {
      this.body.append(
        h("p", { class: "rec-state rec-failed", id: "analysis-state" }, `The analysis failed${a.error ? `: ${a.error}` : ""}.`),
        method,
        actions,
      );
      void this.addRerun(actions);
      return;
    }
    const sentiment = isRecord(doc.sentiment) ? doc.sentiment : {};
    const turns = Array.isArray(sentiment.turning_points) ? sentiment.turning_points.filter(isRecord) : [];
    const scorecard = Array.isArray(doc.scorecard) ? doc.scorecard.filter(isRecord) : [];
    const judged = scorecard.filter((i) => typeof i.passed === "boolean");
    const fact = (label: string, value: Node | string, id: string) => [h("dt", {}, label), h("dd", { id }, value)];
    this.body.append(
      method,
      h("p", { class: "analysis-summary", id: "analysis-summary" }, str(doc.summary) ?? ""),
      h(
        "dl",
        { class: "facts" },
        ...fact("Outcome", h("span", { class: `badge ${OUTCOME_TONE[a.outcome ?? ""] ?? "badge-gray"}` }, humanize(a.outcome ?? "unknown")), "analysis-outcome"),
        ...fact("Sentiment", h("span", { class: `badge ${SENTIMENT_TONE[a.sentiment ?? ""] ?? "badge-gray"}` }, humanize(a.sentiment ?? "unknown")), "analysis-sentiment"),
        ...fact("QA score", `${scoreText(a.score)}${judged.length ? ` (${judged.filter((i) => i.passed).length} of ${judged.length} judged items passed)` : ""}`, "analysis-score"),
        ...fact("Analysed", `${formatDateTime(a.analyzed_at)}${a.runs > 1 ? ` · run ${a.runs}` : ""}`, "analysis-when"),
      ),
      h("h3", {}, "Sentiment turned"),
      turns.length
        ? h("ul", { class: "report-list", id: "analysis-turns" }, ...turns.map((t) => h("li", {}, `To ${humanize(str(t.to) ?? "?").toLowerCase()} at `, this.cite(str(t.line_id) ?? ""))))
        : h("p", { class: "muted", id: "analysis-turns" }, "No turning point."),
      h("h3", {}, "Fields"),
      h("dl", { class: "facts", id: "analysis-fields" }, ...flatten(doc.fields).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
      h("h3", {}, "Scorecard"),
      h(
        "table",
        { class: "latency-table scorecard", id: "analysis-scorecard" },
        h("thead", {}, h("tr", {}, ...["Item", "Verdict", "Evidence", "Note"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, ...scorecard.map((item) => this.scoreRow(item))),
      ),
      h("h3", {}, "Webhook deliveries"),
      this.deliveries(a.deliveries),
      actions,
    );
    void this.addRerun(actions);
  }

  private scoreRow(item: Row): HTMLElement {
    const passed = item.passed;
    const verdict = passed === true ? "pass" : passed === false ? "fail" : "none";
    const evidence = Array.isArray(item.evidence) ? item.evidence.filter((e): e is string => typeof e === "string") : [];
    return h(
      "tr",
      { "data-item": str(item.id) ?? "" },
      h("th", { scope: "row" }, humanize(str(item.id) ?? "item")),
      h("td", {}, h("span", { class: `verdict verdict-${verdict}` }, verdict === "pass" ? "Pass" : verdict === "fail" ? "Fail" : "Not judged")),
      h("td", { class: "evidence" }, ...(evidence.length ? evidence.map((id) => this.cite(id)) : ["—"])),
      h("td", {}, str(item.note) ?? ""),
    );
  }

  /** A cited line: a button that shows it in the transcript and plays the recording from it. */
  private cite(lineId: string): HTMLButtonElement {
    const button = h("button", { type: "button", class: "cite", "data-line-id": lineId, title: "Show this line and play the recording from it" });
    this.label(button);
    button.addEventListener("click", () => {
      if (!this.hooks.seekLine(lineId)) toast("That line is not in the transcript shown.", "error");
    });
    return button;
  }

  /** Name cited lines that arrived after the analysis did (the transcript loads alongside). */
  relabel(): void {
    for (const button of this.body.querySelectorAll<HTMLButtonElement>("button.cite[data-unlabelled]")) this.label(button);
  }

  private label(button: HTMLButtonElement): void {
    const known = this.hooks.lineLabel(button.dataset.lineId ?? "");
    const label = known ?? "a line";
    button.textContent = `▶ ${label}`;
    button.setAttribute("aria-label", `Play ${label}`);
    button.toggleAttribute("data-unlabelled", known === null);
  }

  private deliveries(rows: Row[]): HTMLElement {
    if (!rows.length) return h("p", { class: "muted", id: "analysis-deliveries" }, "None: no webhook is configured (ANALYSIS_WEBHOOK_URL).");
    const table = h(
      "table",
      { class: "latency-table", id: "analysis-deliveries" },
      h("thead", {}, h("tr", {}, ...["Event", "Attempts", "Last status", "Delivered", ""].map((c) => h("th", { scope: "col" }, c)))),
    );
    const body = h("tbody", {});
    for (const d of rows) {
      const id = str(d.id) ?? "";
      const status = num(d.last_status);
      const cell = h("td", {});
      body.append(
        h(
          "tr",
          { "data-msg-id": id },
          h("th", { scope: "row" }, str(d.event_type) ?? "?"),
          h("td", {}, String(num(d.attempts) ?? 0)),
          h("td", { class: status !== undefined && status >= 200 && status < 300 ? "" : "alert-text" }, status !== undefined ? `HTTP ${status}` : str(d.last_error) ?? "—"),
          h("td", {}, d.delivered_at ? formatDateTime(str(d.delivered_at)) : "not yet"),
          cell,
        ),
      );
      void this.hooks.mayOperate().then((ok) => {
        if (ok) cell.append(h("button", { type: "button", class: "btn btn-ghost btn-sm replay", onclick: () => void this.replay(id) }, "Replay"));
      });
    }
    table.append(body);
    return table;
  }

  private async addRerun(row: HTMLElement): Promise<void> {
    if (!(await this.hooks.mayOperate()) || this.ctx.call().live) return;
    row.append(h("button", { type: "button", class: "btn btn-secondary btn-sm", id: "analysis-rerun", onclick: () => void this.rerun() }, icon(ICONS.refresh), "Rerun analysis"));
  }

  private async rerun(): Promise<void> {
    try {
      await api<Accepted>("POST", `/api/calls/${encodeURIComponent(this.ctx.callId)}/analysis/rerun`, {});
      toast("Analysis started again. Check again in a few seconds.", "success");
    } catch (err) {
      toast(`Rerun refused: ${errorText(err)}`, "error");
    }
  }

  private async replay(msgId: string): Promise<void> {
    try {
      await api<Accepted>("POST", `/api/webhooks/${encodeURIComponent(msgId)}/replay`, {});
      toast(`Delivering ${msgId} again (same webhook-id).`, "success");
    } catch (err) {
      toast(`Replay refused: ${errorText(err)}`, "error");
    }
  }
}

const AUTO_CHECKS = 40;
const AUTO_CHECK_MS = 3000;
const OUTCOME_TONE: Record<string, string> = { resolved: "badge-green", follow_up: "badge-amber", handed_off: "badge-blue", abandoned: "badge-red" };
const SENTIMENT_TONE: Record<string, string> = { positive: "badge-green", neutral: "badge-gray", negative: "badge-red" };
