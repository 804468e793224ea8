/**
 * The call list: a page from `GET /api/calls?status=` kept current by `WS /ws/calls`
 * (`snapshot` of live calls, then `call_updated`). Live calls that end stay visible for a few
 * seconds in the "Live" tab so a supervisor sees what happened before they go.
 */

import { ApiError, type CallList, type CallSummary } from "../shared/api";
import { clear, h } from "../shared/dom";
import { formatDateTime, formatDuration, secondsBetween } from "../shared/format";
import { api } from "./session";
import { channelChip } from "./phone";
import { recordingBadge, statusBadge } from "./ui";

export type StatusFilter = "active" | "ended" | "all";

const LINGER_MS = 6000;
const PAGE = 50;

export class CallListView {
  private filter: StatusFilter = "active";
  private calls = new Map<string, CallSummary>();
  private liveCalls = new Map<string, CallSummary>();
  private lingering = new Map<string, number>();
  private cursor: string | null = null;
  private text = "";
  private selected: string | null = null;
  private loadSeq = 0;

  constructor(
    private readonly els: {
      list: HTMLUListElement;
      error: HTMLElement;
      more: HTMLButtonElement;
      tabs: HTMLElement;
      activeCount: HTMLElement;
      filter: HTMLInputElement;
    },
    private readonly onSelect: (callId: string) => void,
  ) {
    els.tabs.addEventListener("click", (event) => {
      const tab = (event.target as HTMLElement).closest<HTMLButtonElement>("button[data-status]");
      if (tab) void this.setFilter(tab.dataset.status as StatusFilter);
    });
    els.more.addEventListener("click", () => void this.load(true));
    els.filter.addEventListener("input", () => {
      this.text = els.filter.value.trim().toLowerCase();
      this.render();
    });
    window.setInterval(() => this.tick(), 1000);
  }

  get statusFilter(): StatusFilter {
    return this.filter;
  }

  async setFilter(filter: StatusFilter): Promise<void> {
    this.filter = filter;
    for (const tab of this.els.tabs.querySelectorAll<HTMLButtonElement>("button[data-status]")) {
      tab.setAttribute("aria-selected", String(tab.dataset.status === filter));
    }
    await this.load(false);
  }

  select(callId: string | null): void {
    this.selected = callId;
    for (const li of this.els.list.querySelectorAll<HTMLElement>("li[data-call-id]")) {
      li.classList.toggle("selected", li.dataset.callId === callId);
    }
  }

  get(callId: string): CallSummary | undefined {
    return this.calls.get(callId) ?? this.liveCalls.get(callId);
  }

  /** Every live call known from the live socket (whatever the tab shows). */
  live(): CallSummary[] {
    return [...this.liveCalls.values()];
  }

  /** Fetch the first page (or the next one, with `more`). */
  async load(more: boolean): Promise<void> {
    const seq = ++this.loadSeq;
    const params = new URLSearchParams({ status: this.filter, limit: String(PAGE) });
    if (more && this.cursor) params.set("cursor", this.cursor);
    this.els.error.hidden = true;
    if (!more) this.els.list.setAttribute("aria-busy", "true");
    try {
      const page = await api<CallList>("GET", `/api/calls?${params}`);
      if (seq !== this.loadSeq) return; // a newer load (another filter) superseded this one
      if (!more) this.calls.clear();
      for (const call of page.calls) this.calls.set(call.call_id, call);
      if (this.filter === "active") for (const call of page.calls) this.liveCalls.set(call.call_id, call);
      this.cursor = page.next_cursor;
    } catch (err) {
      if (seq !== this.loadSeq) return;
      this.els.error.textContent = `Could not load calls: ${err instanceof ApiError ? err.message : String(err)}`;
      this.els.error.hidden = false;
    } finally {
      if (seq === this.loadSeq) this.els.list.removeAttribute("aria-busy");
    }
    this.render();
  }

  /** `snapshot` from the live socket: the complete set of live calls right now. */
  applySnapshot(calls: CallSummary[]): void {
    this.liveCalls = new Map(calls.map((c) => [c.call_id, c]));
    if (this.filter === "active") {
      for (const id of [...this.calls.keys()]) if (!this.liveCalls.has(id) && !this.lingering.has(id)) this.calls.delete(id);
    }
    for (const call of calls) this.upsert(call);
    this.render();
  }

  /** `call_updated` from the live socket. */
  applyUpdate(call: CallSummary): void {
    if (call.live) this.liveCalls.set(call.call_id, call);
    else this.liveCalls.delete(call.call_id);
    this.upsert(call);
    this.render();
  }

  private upsert(call: CallSummary): void {
    const known = this.calls.has(call.call_id);
    if (this.filter === "active") {
      if (call.live) {
        this.calls.set(call.call_id, call);
      } else if (known) {
        this.calls.set(call.call_id, call);
        this.linger(call.call_id);
      }
    } else if (this.filter === "ended") {
      if (!call.live) this.calls.set(call.call_id, call);
      else if (known) this.calls.delete(call.call_id);
    } else {
      this.calls.set(call.call_id, call);
    }
  }

  private linger(callId: string): void {
    if (this.lingering.has(callId)) return;
    this.lingering.set(
      callId,
      window.setTimeout(() => {
        this.lingering.delete(callId);
        if (this.filter === "active" && !this.liveCalls.has(callId)) {
          this.calls.delete(callId);
          this.render();
        }
      }, LINGER_MS),
    );
  }

  private visible(): CallSummary[] {
    const all = [...this.calls.values()].sort((a, b) => (b.created_at ?? "").localeCompare(a.created_at ?? ""));
    if (!this.text) return all;
    return all.filter(
      (c) => c.call_id.includes(this.text) || (c.customer_name ?? "").toLowerCase().includes(this.text),
    );
  }

  render(): void {
    const list = this.els.list;
    clear(list);
    const calls = this.visible();
    this.els.activeCount.textContent = String(this.liveCalls.size);
    this.els.more.hidden = !this.cursor;
    if (calls.length === 0) {
      const empty = this.text
        ? "No call matches the filter."
        : this.filter === "active"
          ? "No live calls right now. New calls appear here as they start."
          : "No calls yet.";
      list.appendChild(h("li", { class: "empty" }, empty));
      return;
    }
    for (const call of calls) list.appendChild(this.row(call));
  }

  private row(call: CallSummary): HTMLLIElement {
    const alerts = call.silence_alerts + call.keyword_alerts;
    const since = call.agent_joined_at ?? call.created_at;
    const li = h(
      "li",
      {
        class: `call-row${call.call_id === this.selected ? " selected" : ""}${call.live ? " is-live" : ""}`,
        "data-call-id": call.call_id,
      },
      h(
        "button",
        { type: "button", class: "call-row-btn", onclick: () => this.onSelect(call.call_id) },
        h(
          "div",
          { class: "row-top" },
          h("span", { class: "row-name" }, call.customer_name || "Anonymous caller"),
          h(
            "span",
            { class: "row-time", "data-since": call.live ? since : null },
            call.live ? formatDuration(secondsBetween(since)) : formatDateTime(call.created_at),
          ),
        ),
        h(
          "div",
          { class: "row-bottom" },
          statusBadge(call.status),
          channelChip(call),
          call.recording_status !== "none" && recordingBadge(call.recording_status),
          alerts > 0 &&
            h("span", { class: "alert-chip", title: `${call.silence_alerts} silence, ${call.keyword_alerts} keyword alerts` }, `⚠ ${alerts}`),
          h("code", { class: "row-id" }, call.call_id.slice(0, 8)),
        ),
      ),
    );
    return li;
  }

  private tick(): void {
    for (const el of this.els.list.querySelectorAll<HTMLElement>("[data-since]")) {
      el.textContent = formatDuration(secondsBetween(el.dataset.since));
    }
  }
}
