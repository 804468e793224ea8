/**
 * The post-call report (`GET /api/calls/{id}/report`): what happened on the call in one place —
 * outcome, alerts, supervisor actions, tool calls, latency percentiles, recording segments and
 * the workflow's own result — and the same document to download as JSON.
 */

import { isRecord, type CallLinks } from "../../shared/api";
import { h, icon, ICONS } from "../../shared/dom";
import { formatClock, formatDuration, humanize } from "../../shared/format";
import { api } from "../session";
import { METHOD_TEXT, scoreText, type CallAnalysis } from "./analysis";
import { errorText, panelSection, str, type CallContext } from "./context";

type Row = Record<string, unknown>;

interface Report {
  call_id: string;
  call: Row;
  workflow: Row;
  transcript: Row[];
  alerts: Row[];
  supervisor_actions: Row[];
  tool_calls: Row[];
  status_history: Row[];
  latency: { turns: Row[]; summary: Record<string, { label: string; count: number; p50_s: number; p95_s: number; max_s: number }> };
  recording: { status: string; segments: Row[] };
  analysis: CallAnalysis | null;
  links?: CallLinks;
  events: number;
}

const ms = (s: number) => `${Math.round(s * 1000)} ms`;

function list(id: string, items: Row[], text: (r: Row) => string, empty: string): HTMLElement {
  if (!items.length) return h("p", { class: "muted", id }, empty);
  return h("ol", { class: "report-list", id }, ...items.map((r) => h("li", {}, h("time", {}, formatClock(str(r.at))), h("span", {}, text(r)))));
}

function alertText(r: Row): string {
  const d = isRecord(r.data) ? r.data : {};
  if (r.kind === "keyword_alert") return `Keyword: ${Array.isArray(d.keywords) ? d.keywords.join(", ") : (str(d.keyword) ?? "?")}`;
  if (r.kind === "silence_alert") return `Silence (${typeof d.quiet_s === "number" ? Math.round(d.quiet_s) : "?"} s)`;
  if (r.kind === "handoff_requested") return `Customer asked for a human${str(d.detail) ? `: ${str(d.detail)}` : ""}`;
  return `${humanize(str(r.kind) ?? "alert")}${str(d.detail) ? `: ${str(d.detail)}` : ""}`;
}

export class ReportPanel {
  readonly element: HTMLElement;
  readonly button: HTMLButtonElement;
  private readonly body = h("div", { class: "report-body", id: "report" });
  private url: string | null = null;

  constructor(private readonly ctx: CallContext) {
    this.button = h(
      "button",
      { type: "button", class: "btn btn-secondary btn-sm", id: "report-button", "aria-expanded": "false", "aria-controls": "report-panel", onclick: () => void this.toggle() },
      icon(ICONS.tag),
      "Report",
    );
    this.element = panelSection("Call report", this.body);
    this.element.id = "report-panel";
    this.element.hidden = true;
  }

  destroy(): void {
    if (this.url) URL.revokeObjectURL(this.url);
  }

  private async toggle(): Promise<void> {
    const open = this.element.hidden;
    this.element.hidden = !open;
    this.button.setAttribute("aria-expanded", String(open));
    if (!open) return;
    this.body.replaceChildren(h("p", { class: "muted" }, "Building the report…"));
    try {
      const report = await api<Report>("GET", `/api/calls/${encodeURIComponent(this.ctx.callId)}/report`);
      this.render(report);
    } catch (err) {
      this.body.replaceChildren(h("p", { class: "rec-state rec-failed", id: "report-error" }, `Could not build the report: ${errorText(err)}`));
    }
    this.element.scrollIntoView({ block: "start" });
  }

  private render(r: Report): void {
    if (this.url) URL.revokeObjectURL(this.url);
    this.url = URL.createObjectURL(new Blob([JSON.stringify(r, null, 2)], { type: "application/json" }));
    const call = r.call;
    const wf = r.workflow;
    const result = isRecord(wf.result) ? wf.result : null;
    const fact = (label: string, value: string, id?: string) => [h("dt", {}, label), h("dd", id ? { id } : {}, value)];
    const figures = Object.entries(r.latency.summary);
    this.body.replaceChildren(
      h(
        "div",
        { class: "report-grid" },
        h(
          "section",
          { "aria-labelledby": "report-outcome" },
          h("h3", { id: "report-outcome" }, "Outcome"),
          h(
            "dl",
            { class: "facts" },
            ...fact("Status", humanize(str(call.status) ?? "unknown"), "report-status"),
            ...fact("End reason", str(call.end_reason) ? humanize(str(call.end_reason)!) : "—"),
            ...fact("Transcript lines", String(r.transcript.length), "report-lines"),
            ...fact("Events", String(r.events)),
            ...fact("Workflow", wf.source === "temporal" ? humanize(String(wf.status ?? "").toLowerCase()) : `not reachable (${str(wf.error) ?? "Temporal"})`, "report-workflow"),
            ...(result ? fact("Workflow result", `${humanize(String(result.status))}, ${String(result.line_count)} lines`) : []),
            ...(r.links?.callback_of ? fact("Callback of", r.links.callback_of.call_id ?? `callback ${r.links.callback_of.callback_id}`, "report-callback-of") : []),
            ...(r.links?.called_back_in.length ? fact("Called back in", r.links.called_back_in.map((l) => l.call_id).join(", "), "report-called-back-in") : []),
          ),
        ),
        h(
          "section",
          { "aria-labelledby": "report-latency" },
          h("h3", { id: "report-latency" }, "Latency"),
          figures.length
            ? h(
                "table",
                { class: "latency-table", id: "report-latency-table" },
                h("thead", {}, h("tr", {}, ...["Figure", "Turns", "p50", "p95", "Max"].map((c) => h("th", { scope: "col" }, c)))),
                h("tbody", {}, ...figures.map(([key, f]) => h("tr", { "data-figure": key }, h("th", { scope: "row" }, f.label), h("td", {}, String(f.count)), h("td", { class: "mono" }, ms(f.p50_s)), h("td", { class: "mono" }, ms(f.p95_s)), h("td", { class: "mono" }, ms(f.max_s))))),
              )
            : h("p", { class: "muted" }, "No latency figures on this call."),
        ),
        h(
          "section",
          { "aria-labelledby": "report-analysis" },
          h("h3", { id: "report-analysis" }, "Analysis"),
          r.analysis && r.analysis.status === "done"
            ? h(
                "dl",
                { class: "facts", id: "report-analysis-facts" },
                ...fact("Outcome", humanize(r.analysis.outcome ?? "unknown")),
                ...fact("Sentiment", humanize(r.analysis.sentiment ?? "unknown")),
                ...fact("QA score", scoreText(r.analysis.score)),
                ...fact("Method", r.analysis.method, "report-analysis-method"),
              )
            : h("p", { class: "muted", id: "report-analysis-facts" }, r.analysis ? `Failed: ${r.analysis.error ?? "unknown"}` : "Not analysed (yet)."),
          r.analysis ? h("p", { class: "analysis-method" }, METHOD_TEXT[r.analysis.method] ?? "") : null,
        ),
        h("section", { "aria-labelledby": "report-alerts" }, h("h3", { id: "report-alerts" }, `Alerts (${r.alerts.length})`), list("report-alert-list", r.alerts, alertText, "No alerts.")),
        h(
          "section",
          { "aria-labelledby": "report-actions" },
          h("h3", { id: "report-actions" }, `Supervisor actions (${r.supervisor_actions.length})`),
          list("report-action-list", r.supervisor_actions, (a) => `${humanize(str(a.action) ?? "action")}${str(a.by) ? ` · ${str(a.by)}` : ""}${str(a.detail) ? `: ${str(a.detail)}` : ""}${str(a.reason) ? ` — ${str(a.reason)}` : ""}`, "None."),
        ),
        h(
          "section",
          { "aria-labelledby": "report-tools" },
          h("h3", { id: "report-tools" }, `Tool calls (${r.tool_calls.length})`),
          list("report-tool-list", r.tool_calls, (t) => {
            const d = isRecord(t.detail) ? t.detail : {};
            const extra = str(d.reference) ?? str(d.detail) ?? (typeof d.consent === "string" || typeof d.consent === "boolean" ? String(d.consent) : "");
            return `${humanize(str(t.tool) ?? "tool")}${extra ? `: ${extra}` : ""}`;
          }, "None."),
        ),
        h(
          "section",
          { "aria-labelledby": "report-recording" },
          h("h3", { id: "report-recording" }, "Recording"),
          r.recording.segments.length
            ? h("ol", { class: "report-list", id: "report-segments" }, ...r.recording.segments.map((s) => h("li", {}, h("code", {}, String(s.object_key)), h("span", {}, ` ${formatDuration(Number(s.duration_s))}${s.incomplete ? " (incomplete)" : ""}`))))
            : h("p", { class: "muted" }, `Not stored (${humanize(r.recording.status)}).`),
        ),
      ),
      h("a", { class: "btn btn-secondary btn-sm", href: this.url, download: `call-${r.call_id}-report.json`, id: "report-download" }, icon(ICONS.download), "Download JSON"),
    );
  }
}
