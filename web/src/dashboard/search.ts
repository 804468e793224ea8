/**
 * Search: every stored call, filtered server-side (`GET /api/calls/search`) by name or id, date
 * range, status, end reason, alerts, recording status and its analysis (outcome, sentiment,
 * minimum QA score), a page at a time. The filters live in
 * the URL (`#/search?q=…&status=…`), so a search is a link a supervisor can share or bookmark.
 */

import { ApiError, type CallList, type CallSummary } from "../shared/api";

/** A search result: the call and its analysis in brief (null before one exists). */
type FoundCall = CallSummary & { outcome?: string | null; sentiment?: string | null; score?: number | null };
import { clear, h } from "../shared/dom";
import { formatDateTime, formatDuration, humanize, secondsBetween } from "../shared/format";
import { api } from "./session";
import { recordingBadge, statusBadge } from "./ui";

const FIELDS = ["q", "from", "to", "status", "end_reason", "alerts", "recording", "outcome", "sentiment", "score"] as const;
const OUTCOMES = ["resolved", "follow_up", "handed_off", "abandoned"];
const SENTIMENTS = ["positive", "neutral", "negative"];
const CALL_STATUSES = ["waiting_for_agent", "in_progress", "ending", "completed", "no_agent", "failed"];
const RECORDING_STATUSES = ["none", "recording", "stopping", "uploading", "stored", "failed"];
const PAGE = 25;

/** `#/search?…` → the filters it names (dates as given, `yyyy-mm-dd`). */
export function searchParams(hash: string): URLSearchParams | null {
  const match = /^#\/search(?:\?(.*))?$/.exec(hash);
  return match ? new URLSearchParams(match[1] ?? "") : null;
}

export class SearchView {
  private readonly form: HTMLFormElement;
  private readonly results = h("tbody", { id: "search-results" });
  private readonly summary = h("p", { class: "muted", id: "search-summary", role: "status" });
  private readonly error = h("p", { class: "form-error", id: "search-error", role: "alert", hidden: true });
  private readonly more: HTMLButtonElement;
  private cursor: string | null = null;
  private shown = 0;
  private query = new URLSearchParams();

  constructor(
    container: HTMLElement,
    params: URLSearchParams,
    private readonly open: (callId: string) => void,
  ) {
    const input = (name: string, label: string, attrs: Record<string, string | number> = {}) =>
      h("label", { class: "field" }, h("span", {}, label), h("input", { class: "input input-sm", name, id: `search-${name}`, value: params.get(name) ?? "", ...attrs }));
    const select = (name: string, label: string, options: [string, string][]) => {
      const el = h("select", { class: "input input-sm", name, id: `search-${name}` }, ...options.map(([v, text]) => h("option", { value: v }, text)));
      el.value = params.get(name) ?? "";
      return h("label", { class: "field" }, h("span", {}, label), el);
    };
    const any: [string, string] = ["", "Any"];
    this.form = h(
      "form",
      { class: "search-form panel", id: "search-form", role: "search", "aria-label": "Search calls" },
      input("q", "Name or call id", { type: "search", maxlength: 100, placeholder: "e.g. Jordan" }),
      input("from", "From", { type: "date" }),
      input("to", "To (inclusive)", { type: "date" }),
      select("status", "Status", [any, ...CALL_STATUSES.map((s): [string, string] => [s, humanize(s)])]),
      input("end_reason", "End reason", { maxlength: 100, placeholder: "e.g. customer_left", list: "end-reasons" }),
      h("datalist", { id: "end-reasons" }, ...["customer_left", "agent_left", "max_duration", "customer_never_joined", "silent"].map((r) => h("option", { value: r }))),
      select("alerts", "Alerts", [any, ["any", "Any alert"], ["keyword", "Keyword alerts"], ["silence", "Silence alerts"], ["none", "No alerts"]]),
      select("recording", "Recording", [any, ...RECORDING_STATUSES.map((s): [string, string] => [s, humanize(s)])]),
      select("outcome", "Outcome", [any, ...OUTCOMES.map((s): [string, string] => [s, humanize(s)])]),
      select("sentiment", "Sentiment", [any, ...SENTIMENTS.map((s): [string, string] => [s, humanize(s)])]),
      select("score", "QA score", [any, ["0.5", "50% or more"], ["0.75", "75% or more"], ["1", "100%"]]),
      h("div", { class: "search-actions" }, h("button", { type: "submit", class: "btn btn-primary btn-sm", id: "search-submit" }, "Search"),
        h("button", { type: "reset", class: "btn btn-ghost btn-sm" }, "Clear")),
    );
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      window.location.hash = `#/search?${this.formQuery().toString()}`; // the route runs the search
    });
    this.form.addEventListener("reset", () => window.setTimeout(() => (window.location.hash = "#/search"), 0));
    this.more = h("button", { type: "button", class: "btn btn-secondary btn-sm", id: "search-more", hidden: true, onclick: () => void this.load(true) }, "Next page");
    clear(container);
    container.append(
      h(
        "section",
        { class: "search" },
        h("h1", {}, "Search calls"),
        h("p", { class: "muted" }, "Every stored call. The address bar holds the search: copy it to share."),
        this.form,
        this.error,
        this.summary,
        h(
          "table",
          { class: "results" },
          h("caption", { class: "sr-only" }, "Calls matching the search"),
          h("thead", {}, h("tr", {}, ...["Customer", "Started", "Duration", "Status", "End reason", "Alerts", "Recording", "Outcome", "Sentiment", "Score"].map((c) => h("th", { scope: "col" }, c)))),
          this.results,
        ),
        h("div", { class: "list-foot" }, this.more),
      ),
    );
    this.query = this.apiQuery(params);
    void this.load(false);
  }

  /** The form as the URL's filters (only the ones set). */
  private formQuery(): URLSearchParams {
    const out = new URLSearchParams();
    const data = new FormData(this.form);
    for (const name of FIELDS) {
      const value = String(data.get(name) ?? "").trim();
      if (value) out.set(name, value);
    }
    return out;
  }

  /** URL filters → API parameters: dates become the day's bounds in the supervisor's time zone. */
  private apiQuery(params: URLSearchParams): URLSearchParams {
    const out = new URLSearchParams();
    for (const name of FIELDS) {
      const value = params.get(name);
      if (!value) continue;
      const day = new Date(`${value}T00:00:00`);
      if ((name === "from" || name === "to") && /^\d{4}-\d{2}-\d{2}$/.test(value) && !Number.isNaN(day.getTime())) {
        if (name === "to") day.setDate(day.getDate() + 1); // "to" includes that whole day
        out.set(name, day.toISOString());
      } else {
        out.set(name, value);
      }
    }
    out.set("limit", String(PAGE));
    return out;
  }

  private async load(more: boolean): Promise<void> {
    const query = new URLSearchParams(this.query);
    if (more && this.cursor) query.set("cursor", this.cursor);
    this.error.hidden = true;
    this.more.disabled = true;
    let page: CallList;
    try {
      page = await api<CallList>("GET", `/api/calls/search?${query.toString()}`);
    } catch (err) {
      this.error.textContent = err instanceof ApiError ? `Search refused: ${err.message}` : String(err);
      this.error.hidden = false;
      this.more.disabled = false;
      return;
    }
    if (!more) {
      clear(this.results);
      this.shown = 0;
    }
    for (const call of page.calls) this.results.append(this.row(call));
    this.shown += page.calls.length;
    this.cursor = page.next_cursor;
    this.more.hidden = !page.next_cursor;
    this.more.disabled = false;
    this.summary.textContent = this.shown
      ? `${this.shown} call${this.shown === 1 ? "" : "s"}${page.next_cursor ? " so far" : ""}.`
      : "No call matches this search.";
  }

  private row(call: FoundCall): HTMLElement {
    const seconds = call.created_at ? secondsBetween(call.agent_joined_at ?? call.created_at, call.ended_at ?? null) : 0;
    const alerts = call.silence_alerts + call.keyword_alerts;
    const link = h("a", { href: `#/calls/${call.call_id}`, class: "row-link" }, call.customer_name || "Anonymous caller");
    link.addEventListener("click", (event) => {
      event.preventDefault();
      this.open(call.call_id);
    });
    return h(
      "tr",
      { "data-call-id": call.call_id },
      h("td", {}, link, h("code", { class: "row-id" }, call.call_id.slice(0, 8))),
      h("td", {}, formatDateTime(call.created_at)),
      h("td", { class: "mono" }, formatDuration(seconds)),
      h("td", {}, statusBadge(call.status)),
      h("td", {}, call.end_reason ? humanize(call.end_reason) : "—"),
      h("td", {}, alerts ? `${call.keyword_alerts} keyword · ${call.silence_alerts} silence` : "—"),
      h("td", {}, recordingBadge(call.recording_status)),
      h("td", { class: "result-outcome" }, call.outcome ? humanize(call.outcome) : "—"),
      h("td", { class: "result-sentiment" }, call.sentiment ? humanize(call.sentiment) : "—"),
      h("td", { class: "result-score mono" }, typeof call.score === "number" ? `${Math.round(call.score * 100)}%` : "—"),
    );
  }
}
