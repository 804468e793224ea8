/**
 * What every panel of the call view may know and do about the call: its id, its current summary,
 * and a way to merge a change into it (which re-renders the header and tells the call list).
 * Panels never talk to each other; the view routes events to them.
 */

import { ApiError, type CallSummary } from "../../shared/api";
import { h } from "../../shared/dom";
import { describeError } from "../../shared/voice";

export const ACTIVE = new Set(["waiting_for_agent", "in_progress", "ending", "dialing", "ringing"]);

export interface CallContext {
  readonly callId: string;
  call(): CallSummary;
  update(partial: Partial<CallSummary>): void;
}

export function str(value: unknown): string | undefined {
  return typeof value === "string" && value ? value : undefined;
}

export function num(value: unknown): number | undefined {
  return typeof value === "number" && Number.isFinite(value) ? value : undefined;
}

export function errorText(err: unknown): string {
  return err instanceof ApiError ? err.message : describeError(err);
}

/** A side panel: a titled section around a body element. */
export function panelSection(title: string, body: HTMLElement): HTMLElement {
  return h("section", { class: "panel" }, h("header", { class: "panel-head" }, h("h2", {}, title)), body);
}
