/**
 * Outbound work (supervisor, ops, admin read; supervisor and admin act): the Callbacks view
 * (`#/callbacks`: due soon, failed, and every callback by status, with Cancel on the ones still
 * waiting: `DELETE /api/callbacks/{id}`; a form schedules one: `POST /api/callbacks`) and the Campaigns view (`#/campaigns`: each campaign's
 * progress, with Pause / Resume / Cancel: `POST /api/campaigns/{id}/pause|resume|cancel`).
 * Numbers come masked from the API (an admin's are whole). Self-contained: main.ts mounts the
 * topbar links and routes the two hashes here. A refused action shows the API's message.
 */

import "./outbound.css";

import { ApiError } from "../shared/api";
import { clear, h } from "../shared/dom";
import { formatDateTime } from "../shared/format";
import { api } from "./session";
import { toast } from "./ui";

export const CALLBACKS_ROUTE = "#/callbacks";
export const CAMPAIGNS_ROUTE = "#/campaigns";
const DUE_SOON_MS = 24 * 3600 * 1000;
const STATUSES = ["scheduled", "dialing", "completed", "failed", "cancelled"];

interface Callback {
  id: string;
  status: string;
  at: string;
  due_at: string;
  timezone: string;
  phone: string;
  reason: string;
  end_reason: string;
  attempts: unknown[];
}

interface Progress {
  dialled: number;
  answered: number;
  busy: number;
  no_answer: number;
  failed: number;
  skipped: number;
  remaining: number;
  total: number;
}

interface Campaign {
  id: string;
  name: string;
  status: string;
  timezone: string;
  window: string;
  max_concurrent: number;
  start_at: string;
  progress: Progress;
}

/** Adds the "Callbacks" and "Campaigns" links to the topbar. */
export function mountOutboundLinks(bar: HTMLElement): void {
  if (bar.querySelector("#callbacks-link")) return;
  bar.prepend(
    h("a", { class: "btn btn-ghost btn-sm", id: "callbacks-link", href: CALLBACKS_ROUTE }, "Callbacks"),
    h("a", { class: "btn btn-ghost btn-sm", id: "campaigns-link", href: CAMPAIGNS_ROUTE }, "Campaigns"),
  );
}

function message(err: unknown): string {
  return err instanceof ApiError ? err.message : err instanceof Error ? err.message : String(err);
}

function table(id: string, heads: string[], rows: HTMLElement[]): HTMLElement {
  return h(
    "table",
    { class: "outbound-table panel", id },
    h("thead", {}, h("tr", {}, ...heads.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, ...rows),
  );
}

/** A view that loads a list, then renders it (or says why it could not). */
abstract class LoadedView<T> {
  private destroyed = false;

  constructor(
    protected readonly root: HTMLElement,
    private readonly title: string,
  ) {
    queueMicrotask(() => void this.load());
  }

  destroy(): void {
    this.destroyed = true;
  }

  protected abstract fetch(): Promise<T>;
  protected abstract render(items: T): void;

  protected async load(): Promise<void> {
    clear(this.root);
    const status = h("p", { class: "muted", id: "outbound-status" }, "Loading…");
    this.root.append(h("section", { class: "outbound-view" }, h("h1", {}, this.title), status));
    let items: T;
    try {
      items = await this.fetch();
    } catch (err) {
      status.textContent = `Could not load ${this.title.toLowerCase()}: ${message(err)}`;
      status.classList.add("form-error");
      return;
    }
    if (!this.destroyed) this.render(items);
  }
}

function pad(n: number): string {
  return String(n).padStart(2, "0");
}

/** Minutes east of UTC that IANA `zone` is at `instant` (ms); a RangeError for an unknown zone. */
function zoneOffsetMinutes(instant: number, zone: string): number {
  const fmt = new Intl.DateTimeFormat("en-US", { timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const p = Object.fromEntries(fmt.formatToParts(new Date(instant)).map((x) => [x.type, x.value]));
  return Math.round((Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second) - instant) / 60000);
}

/**
 * A wall time (a datetime-local value, `YYYY-MM-DDTHH:MM`) in the customer's IANA `zone` as
 * ISO 8601 with that zone's offset then, as `POST /api/callbacks` wants `at`: "3 pm in
 * Chicago" is `15:00:00-06:00` in winter and `-05:00` in summer, whatever the browser's zone.
 */
export function zonedIso(wall: string, zone: string): string {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(wall);
  if (!m) throw new RangeError("Pick a date and a time.");
  const asUtc = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]);
  const first = zoneOffsetMinutes(asUtc, zone);
  const offset = zoneOffsetMinutes(asUtc - first * 60000, zone); // the offset at that instant itself
  const abs = Math.abs(offset);
  return `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:00${offset < 0 ? "-" : "+"}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

/** The "Schedule a callback" form: `POST /api/callbacks` (supervisor or admin). */
function scheduleForm(onScheduled: () => void): HTMLElement {
  const phone = h("input", { class: "input input-sm", id: "callback-phone", name: "phone", type: "tel", required: true, maxlength: 16, placeholder: "+15551230001", "aria-label": "Number to call back (E.164)" });
  const when = h("input", { class: "input input-sm", id: "callback-at", name: "at", type: "datetime-local", required: true, "aria-label": "When, in the customer's time" });
  const zone = h("input", { class: "input input-sm", id: "callback-timezone", name: "timezone", required: true, maxlength: 64, value: Intl.DateTimeFormat().resolvedOptions().timeZone, "aria-label": "The customer's time zone (IANA, e.g. America/Chicago)" });
  const reason = h("input", { class: "input input-sm", id: "callback-reason", name: "reason", maxlength: 500, placeholder: "What about (Sarah opens with it)", "aria-label": "Reason" });
  const error = h("p", { class: "form-error", id: "callback-error", role: "alert", hidden: true });
  const submit = h("button", { type: "submit", class: "btn btn-primary btn-sm", id: "callback-submit" }, "Schedule");
  const form = h(
    "form",
    { class: "action-form panel", id: "callback-form", novalidate: true },
    h("h2", {}, "Schedule a callback"),
    h("p", { class: "muted" }, "Sarah calls the customer at this time in their time zone, inside the calling window, and opens with the reason."),
    phone,
    when,
    zone,
    reason,
    error,
    h("div", { class: "action-row" }, submit),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void schedule();
  });
  async function schedule(): Promise<void> {
    error.hidden = true;
    let at: string;
    try {
      if (!/^\+[1-9][0-9]{6,14}$/.test(phone.value.trim())) throw new RangeError("Enter the number in E.164 form, e.g. +15551230001.");
      at = zonedIso(when.value, zone.value.trim());
    } catch (err) {
      error.textContent = err instanceof RangeError && /time ?zone/i.test(err.message) ? `Unknown time zone: ${zone.value}` : message(err);
      error.hidden = false;
      return;
    }
    submit.disabled = true;
    try {
      const body: Record<string, string> = { phone: phone.value.trim(), at, timezone: zone.value.trim() };
      if (reason.value.trim()) body.reason = reason.value.trim();
      const made = await api<Callback>("POST", "/api/callbacks", body);
      phone.value = reason.value = when.value = "";
      toast(`Callback scheduled for ${formatDateTime(made.at)}`, "success");
      onScheduled();
    } catch (err) {
      error.textContent = `Not scheduled: ${message(err)}`;
      error.hidden = false;
    } finally {
      submit.disabled = false;
    }
  }
  return form;
}

export class CallbacksView extends LoadedView<Callback[]> {
  private filter = "";

  constructor(root: HTMLElement) {
    super(root, "Callbacks");
  }

  protected async fetch(): Promise<Callback[]> {
    return (await api<{ callbacks: Callback[] }>("GET", "/api/callbacks")).callbacks;
  }

  private row(item: Callback): HTMLElement {
    const act = h("td", { class: "outbound-act" });
    if (item.status === "scheduled" || item.status === "dialing") {
      const button = h("button", { class: "btn btn-secondary btn-sm", type: "button", "data-cancel": item.id }, "Cancel");
      button.addEventListener("click", () => void this.cancel(item.id, button));
      act.append(button);
    }
    return h(
      "tr",
      { "data-callback": item.id },
      h("td", {}, item.phone),
      h("td", {}, h("span", { class: `pill pill-${item.status}` }, item.status)),
      h("td", {}, formatDateTime(item.due_at)),
      h("td", {}, item.reason || "—"),
      h("td", {}, `${item.attempts.length}${item.end_reason ? ` · ${item.end_reason}` : ""}`),
      act,
    );
  }

  protected render(items: Callback[]): void {
    clear(this.root);
    const now = Date.now();
    const soon = items.filter((i) => i.status === "scheduled" && Date.parse(i.due_at) - now < DUE_SOON_MS);
    const failed = items.filter((i) => i.status === "failed");
    const select = h("select", { id: "callbacks-filter", "aria-label": "Status" }, h("option", { value: "" }, "every status"), ...STATUSES.map((s) => h("option", { value: s }, s)));
    select.value = this.filter;
    select.addEventListener("change", () => {
      this.filter = select.value;
      this.render(items);
    });
    const shown = items.filter((i) => !this.filter || i.status === this.filter);
    const heads = ["Number", "Status", "Due", "Reason", "Attempts", ""];
    const section = (title: string, id: string, list: Callback[], empty: string) =>
      h("div", { class: "outbound-section" }, h("h2", {}, `${title} (${list.length})`), list.length ? table(id, heads, list.map((i) => this.row(i))) : h("p", { class: "muted" }, empty));
    this.root.append(
      h(
        "section",
        { class: "outbound-view" },
        h("h1", {}, "Callbacks"),
        scheduleForm(() => void this.load()),
        section("Due in the next 24 hours", "callbacks-soon", soon, "None due soon."),
        section("Failed", "callbacks-failed", failed, "None failed."),
        h("div", { class: "outbound-section" }, h("div", { class: "panel-head" }, h("h2", {}, `By status (${shown.length})`), h("label", {}, "Show ", select)), table("callbacks-all", heads, shown.map((i) => this.row(i)))),
      ),
    );
  }

  private async cancel(id: string, button: HTMLButtonElement): Promise<void> {
    button.disabled = true;
    try {
      await api("DELETE", `/api/callbacks/${encodeURIComponent(id)}`);
      toast("Callback cancelled", "success");
      await this.load();
    } catch (err) {
      toast(`Not cancelled: ${message(err)}`, "error");
      button.disabled = false;
    }
  }
}

export class CampaignsView extends LoadedView<Campaign[]> {
  constructor(root: HTMLElement) {
    super(root, "Campaigns");
  }

  protected async fetch(): Promise<Campaign[]> {
    const list = (await api<{ campaigns: Campaign[] }>("GET", "/api/campaigns")).campaigns;
    // The live counts of the ones still running (the list has the last written ones).
    return Promise.all(list.map((c) => (["completed", "cancelled"].includes(c.status) ? c : api<Campaign>("GET", `/api/campaigns/${c.id}`))));
  }

  protected render(items: Campaign[]): void {
    clear(this.root);
    const rows = items.map((c) => {
      const p = c.progress;
      const done = p.total ? Math.round((100 * (p.total - p.remaining)) / p.total) : 0;
      const act = h("td", { class: "outbound-act" });
      const ended = c.status === "completed" || c.status === "cancelled";
      if (!ended) {
        const toggle = c.status === "paused" ? "resume" : "pause";
        for (const what of [toggle, "cancel"]) {
          const button = h("button", { class: "btn btn-secondary btn-sm", type: "button", "data-action": what }, what === "pause" ? "Pause" : what === "resume" ? "Resume" : "Cancel");
          button.addEventListener("click", () => void this.act(c.id, what, button));
          act.append(button);
        }
      }
      return h(
        "tr",
        { "data-campaign": c.id },
        h("td", {}, c.name),
        h("td", {}, h("span", { class: `pill pill-${c.status}` }, c.status)),
        h("td", {}, h("progress", { max: "100", value: String(done), "aria-label": `${c.name}: ${done}% done` }), h("span", { class: "muted" }, ` ${p.total - p.remaining}/${p.total}`)),
        h("td", { class: "outbound-counts" }, `${p.dialled} dialled · ${p.answered} answered · ${p.busy} busy · ${p.no_answer} no answer · ${p.failed} failed · ${p.skipped} skipped · ${p.remaining} remaining`),
        h("td", {}, `${c.window} ${c.timezone}`),
        act,
      );
    });
    this.root.append(
      h(
        "section",
        { class: "outbound-view" },
        h("h1", {}, "Campaigns"),
        h("p", { class: "muted" }, "Each campaign dials its list a few at a time, inside its calling window, skipping numbers on the do-not-call list. Paused: calls ringing finish, none starts."),
        items.length ? table("campaigns-table", ["Name", "Status", "Done", "Progress", "Window", ""], rows) : h("div", { class: "panel empty-detail", id: "campaigns-empty" }, h("h2", {}, "No campaigns yet"), h("p", { class: "muted" }, "POST /api/campaigns starts one.")),
      ),
    );
  }

  private async act(id: string, what: string, button: HTMLButtonElement): Promise<void> {
    button.disabled = true;
    try {
      await api("POST", `/api/campaigns/${encodeURIComponent(id)}/${what}`);
      toast(`Campaign ${what === "cancel" ? "cancelled" : what === "pause" ? "paused" : "resumed"}`, "success");
      await this.load();
    } catch (err) {
      toast(`Refused: ${message(err)}`, "error");
      button.disabled = false;
    }
  }
}
