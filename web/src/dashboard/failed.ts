/**
 * Failed recordings (ops and admin): the calls whose recording failed, why, and a Retry per
 * call where a pipeline exists to replay, plus Retry all over those (each is
 * `POST /api/recordings/{id}/retry`, a few at a time, with a running count). A recording that
 * failed in the call itself (no egress file, so no pipeline) or that ops gave up on gets no
 * button: the row says what ops can do instead. Self-contained: main.ts mounts the topbar link and routes
 * `#/recordings/failed` here. The link only appears for a token the list endpoint accepts
 * (403 for supervisors), so nobody sees buttons they may not press.
 */

import "./failed.css";

import { ApiError } from "../shared/api";
import { clear, h } from "../shared/dom";
import { formatDateTime } from "../shared/format";
import { api } from "./session";
import { toast } from "./ui";

export const FAILED_ROUTE = "#/recordings/failed";
const PARALLEL = 4;

interface FailedRecording {
  call_id: string;
  room_name: string;
  customer_name: string | null;
  status: string;
  created_at: string | null;
  ended_at: string | null;
  recording_error: string | null;
  given_up: boolean;
  /** A pipeline exists and ops have not given up: Retry can replay it. */
  retryable: boolean;
  /** What Retry does, or what ops can do instead (no pipeline, or given up). */
  what_to_do: string;
}

interface FailedPage {
  recordings: FailedRecording[];
  next_cursor: string | null;
}

async function fetchAll(): Promise<FailedRecording[]> {
  const all: FailedRecording[] = [];
  let cursor: string | null = null;
  do {
    const query: string = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
    const page: FailedPage = await api<FailedPage>("GET", `/api/recordings?status=failed&limit=500${query}`);
    all.push(...page.recordings);
    cursor = page.next_cursor;
  } while (cursor);
  return all;
}

/** Adds the "Failed recordings" link (with its count) to `bar` when the token may retry. */
export async function mountFailedLink(bar: HTMLElement): Promise<void> {
  if (bar.querySelector("#failed-link")) return;
  let count: number;
  try {
    count = (await api<FailedPage>("GET", "/api/recordings?status=failed&limit=500")).recordings.length;
  } catch (err) {
    if (err instanceof ApiError && err.status === 403) return; // a supervisor: not theirs
    count = 0;
  }
  const badge = h("span", { class: "count", id: "failed-count" }, String(count));
  const link = h("a", { class: "btn btn-ghost btn-sm", id: "failed-link", href: FAILED_ROUTE }, "Failed recordings ", badge);
  bar.prepend(link);
}

function setCount(n: number): void {
  const badge = document.getElementById("failed-count");
  if (badge) badge.textContent = String(n);
}

export class FailedRecordingsView {
  private rows = new Map<string, HTMLTableRowElement>();
  private busy = false;
  private destroyed = false;

  constructor(private readonly root: HTMLElement) {
    void this.load();
  }

  destroy(): void {
    this.destroyed = true;
  }

  private async load(): Promise<void> {
    clear(this.root);
    const status = h("p", { class: "muted", id: "failed-status" }, "Loading…");
    this.root.append(h("section", { class: "failed-view" }, h("h1", {}, "Failed recordings"), status));
    let items: FailedRecording[];
    try {
      items = await fetchAll();
    } catch (err) {
      status.textContent = err instanceof ApiError && err.status === 403
        ? "Only ops and admin tokens can see and retry failed recordings."
        : `Could not load failed recordings: ${err instanceof Error ? err.message : String(err)}`;
      status.classList.add("form-error");
      return;
    }
    if (this.destroyed) return;
    this.render(items);
  }

  private render(items: FailedRecording[]): void {
    clear(this.root);
    setCount(items.length);
    this.rows.clear();
    const retryable = items.filter((i) => i.retryable);
    const retryAll = h("button", { class: "btn btn-primary btn-sm", id: "retry-all", type: "button", disabled: retryable.length === 0 }, "Retry all");
    const progress = h("span", { class: "muted", id: "retry-progress" });
    retryAll.addEventListener("click", () => {
      const pending = retryable.map((i) => i.call_id).filter((id) => !this.rows.get(id)?.classList.contains("retried"));
      void this.retryAll(pending, retryAll, progress);
    });
    const body = h("tbody");
    for (const item of items) {
      const act = h("td", { class: "failed-act" });
      if (item.retryable) {
        const button = h("button", { class: "btn btn-secondary btn-sm", type: "button", "data-call": item.call_id, title: item.what_to_do }, "Retry");
        button.addEventListener("click", () => void this.retryOne(item.call_id));
        act.append(button, h("span", { class: "retry-state" }));
      } else {
        act.append(h("span", { class: "failed-instead muted" }, item.what_to_do));
      }
      const row = h(
        "tr",
        { "data-call": item.call_id },
        h("td", {}, h("a", { href: `#/calls/${item.call_id}` }, item.call_id)),
        h("td", {}, item.customer_name ?? "—"),
        h("td", {}, formatDateTime(item.ended_at ?? item.created_at)),
        h("td", { class: "failed-why" }, item.recording_error ?? "unknown"),
        act,
      );
      this.rows.set(item.call_id, row);
      body.append(row);
    }
    this.root.append(
      h(
        "section",
        { class: "failed-view" },
        h("div", { class: "panel-head" }, h("h1", {}, "Failed recordings"), h("div", { class: "failed-tools" }, progress, retryAll)),
        h("p", { class: "muted" }, "Recordings not stored. Retry replays a pipeline with its original input once the cause (storage, the egress file) is fixed; a row without Retry says what to do instead."),
        items.length
          ? h(
              "table",
              { class: "failed-table panel", id: "failed-table" },
              h("thead", {}, h("tr", {}, h("th", {}, "Call"), h("th", {}, "Customer"), h("th", {}, "Ended"), h("th", {}, "Why"), h("th", {}, ""))),
              body,
            )
          : h("div", { class: "panel empty-detail", id: "failed-empty" }, h("h2", {}, "Nothing has failed"), h("p", { class: "muted" }, "Every recording pipeline stored its file or is still working.")),
      ),
    );
  }

  /** Returns whether the replay started. */
  private async retryOne(callId: string): Promise<boolean> {
    const row = this.rows.get(callId);
    const button = row?.querySelector("button");
    const state = row?.querySelector(".retry-state");
    if (button) button.disabled = true;
    try {
      await api("POST", `/api/recordings/${encodeURIComponent(callId)}/retry`);
      if (state) state.textContent = "retrying";
      row?.classList.add("retried");
      const badge = document.getElementById("failed-count");
      if (badge) setCount(Math.max(0, Number(badge.textContent) - 1));
      return true;
    } catch (err) {
      const text = err instanceof ApiError ? err.message : String(err);
      if (state) state.textContent = text;
      row?.classList.add("retry-refused");
      if (button) button.disabled = false;
      return false;
    }
  }

  private async retryAll(ids: string[], button: HTMLButtonElement, progress: HTMLElement): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    button.disabled = true;
    let done = 0;
    let started = 0;
    const queue = [...ids];
    const worker = async (): Promise<void> => {
      for (let id = queue.shift(); id !== undefined; id = queue.shift()) {
        if (await this.retryOne(id)) started += 1;
        done += 1;
        progress.textContent = `${done}/${ids.length}`;
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL, ids.length) }, worker));
    progress.textContent = `${started} of ${ids.length} retried`;
    toast(`Retried ${started} of ${ids.length} recordings`, started === ids.length ? "success" : "error");
    this.busy = false;
  }
}
