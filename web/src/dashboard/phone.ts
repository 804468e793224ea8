/**
 * The phone line in the dashboard: a call's channel and masked number, the "Call a number" form
 * (`POST /api/calls/outbound`, supervisors and admins) and the cold transfer of a phone caller
 * (`POST /api/calls/{id}/transfer`). The API masks numbers (`+1•••••0001`) for everyone but an
 * admin's call detail; the dashboard shows what it is given.
 */

import type { Accepted, CallSummary } from "../shared/api";
import { h, icon, ICONS } from "../shared/dom";
import { api } from "./session";
import { toast } from "./ui";
import { errorText } from "./call/context";

/** "Phone · in · +1•••••0001" for a phone call, nothing for a web call. */
export function channelChip(call: CallSummary): HTMLElement | null {
  if (call.channel !== "phone") return null;
  const way = call.direction === "outbound" ? "out" : "in";
  return h(
    "span",
    { class: "channel-chip", "data-channel": "phone", "data-direction": call.direction ?? "inbound", title: `Phone call (${call.direction ?? "inbound"})` },
    icon(ICONS.phone),
    `Phone · ${way}`,
    call.phone ? h("span", { class: "mono channel-number" }, ` ${call.phone}`) : null,
  );
}

interface OutboundCall {
  call_id: string;
  status: string;
  phone: string;
}

/** The "Call a number" button and its form, for people who may place calls. */
export function mountDialer(host: HTMLElement, roles: string[], onPlaced: (callId: string) => void): void {
  if (!roles.some((r) => r === "supervisor" || r === "admin") || host.querySelector("#dial-button")) return;
  const to = h("input", { class: "input input-sm", id: "dial-to", name: "to", type: "tel", required: true, maxlength: 16, placeholder: "+15551230001", "aria-label": "Number to call (E.164)" });
  const name = h("input", { class: "input input-sm", id: "dial-name", name: "customer_name", maxlength: 100, placeholder: "Customer name (optional)", "aria-label": "Customer name" });
  const reason = h("input", { class: "input input-sm", id: "dial-reason", name: "reason", maxlength: 500, placeholder: "Why we call (optional)", "aria-label": "Reason" });
  const error = h("p", { class: "form-error", id: "dial-error", role: "alert", hidden: true });
  const form = h(
    "form",
    { class: "action-form dial-form", id: "dial-form", hidden: true, novalidate: true },
    h("p", {}, "Sarah calls this number and talks to whoever answers."),
    to,
    name,
    reason,
    error,
    h("div", { class: "action-row" },
      h("button", { type: "submit", class: "btn btn-primary btn-sm", id: "dial-submit" }, "Call"),
      h("button", { type: "button", class: "btn btn-ghost btn-sm", onclick: () => (form.hidden = true) }, "Cancel")),
  );
  const button = h(
    "button",
    { type: "button", class: "btn btn-secondary btn-sm", id: "dial-button", onclick: () => { form.hidden = !form.hidden; if (!form.hidden) to.focus(); } },
    icon(ICONS.phone),
    "Call a number",
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void place();
  });
  async function place(): Promise<void> {
    const submit = form.querySelector<HTMLButtonElement>("button[type=submit]");
    error.hidden = true;
    if (!/^\+[1-9][0-9]{6,14}$/.test(to.value.trim())) {
      error.textContent = "Enter the number in E.164 form, e.g. +15551230001.";
      error.hidden = false;
      to.focus();
      return;
    }
    if (submit) submit.disabled = true;
    try {
      const body: Record<string, string> = { to: to.value.trim() };
      if (name.value.trim()) body.customer_name = name.value.trim();
      if (reason.value.trim()) body.reason = reason.value.trim();
      const placed = await api<OutboundCall>("POST", "/api/calls/outbound", body);
      form.hidden = true;
      to.value = name.value = reason.value = "";
      toast(`Calling ${placed.phone}…`, "success");
      onPlaced(placed.call_id);
    } catch (err) {
      error.textContent = `Not called: ${errorText(err)}`;
      error.hidden = false;
    } finally {
      if (submit) submit.disabled = false;
    }
  }
  host.append(button, form);
}

/** The Transfer button and its form on a phone call's head. */
export class TransferControl {
  readonly button: HTMLButtonElement;
  readonly form: HTMLFormElement;
  private readonly to: HTMLInputElement;

  constructor(private readonly callId: string, private readonly onDone: (status: string) => void) {
    this.to = h("input", { class: "input input-sm", id: "transfer-to", name: "to", required: true, maxlength: 256, placeholder: "tel:+15551239999", "aria-label": "Transfer to (tel: or sip:)" });
    this.form = h(
      "form",
      { class: "action-form", id: "transfer-form", hidden: true },
      h("p", {}, h("strong", {}, "Transfer the caller?"), " The phone call moves to that number and ends here."),
      h("div", { class: "action-row" }, this.to,
        h("button", { type: "submit", class: "btn btn-primary btn-sm", id: "transfer-confirm" }, "Transfer")),
    );
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.transfer();
    });
    this.button = h(
      "button",
      { type: "button", class: "btn btn-secondary btn-sm", id: "transfer-button", hidden: true, onclick: () => { this.form.hidden = !this.form.hidden; if (!this.form.hidden) this.to.focus(); } },
      icon(ICONS.phone),
      "Transfer",
    );
  }

  /** Shown on phone calls only; usable while the call is in progress. */
  render(call: CallSummary, live: boolean): void {
    this.button.hidden = call.channel !== "phone";
    this.button.disabled = !live || call.status !== "in_progress";
    if (this.button.disabled) this.form.hidden = true;
  }

  private async transfer(): Promise<void> {
    const target = this.to.value.trim();
    if (!/^(tel:\+[1-9][0-9]{6,14}|sips?:\S+)$/.test(target)) {
      toast("Transfer to a tel:+… number or a sip: address.", "error");
      this.to.focus();
      return;
    }
    const confirm = this.form.querySelector<HTMLButtonElement>("button[type=submit]");
    if (confirm) confirm.disabled = true;
    try {
      const result = await api<Accepted>("POST", `/api/calls/${encodeURIComponent(this.callId)}/transfer`, { to: target });
      this.form.hidden = true;
      toast("Caller transferred.", "success");
      this.onDone(result.status);
    } catch (err) {
      toast(`Not transferred: ${errorText(err)}`, "error");
    } finally {
      if (confirm) confirm.disabled = false;
    }
  }
}
