/**
 * The supervisor's bearer token lives in sessionStorage: it survives a reload of the tab but not
 * closing it, and other tabs or sites never see it. Every authenticated request goes through
 * `api()`, which signs the user out when the server says the token is no longer valid (401).
 */

import { ApiError, apiRequest } from "../shared/api";

const KEY = "callcenter.supervisor_token";
let onExpired: (message: string) => void = () => undefined;
let memoryToken: string | null = null;

export function currentToken(): string | null {
  try {
    return window.sessionStorage.getItem(KEY);
  } catch {
    return null; // storage disabled: the user signs in again on each load
  }
}

export function saveToken(token: string): void {
  try {
    window.sessionStorage.setItem(KEY, token);
  } catch {
    // Storage disabled: the token still works for this page's lifetime via `memoryToken`.
  }
  memoryToken = token;
}

export function forgetToken(): void {
  try {
    window.sessionStorage.removeItem(KEY);
  } catch {
    // nothing stored
  }
  memoryToken = null;
}

export function token(): string | null {
  return memoryToken ?? currentToken();
}

export function whenExpired(handler: (message: string) => void): void {
  onExpired = handler;
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  try {
    return await apiRequest<T>(method, path, { body, token: token() });
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) onExpired(err.message);
    throw err;
  }
}

/** The Temporal Web UI (devstack default port 8233 on the same host as the dashboard). */
export function temporalUiBase(): string {
  return `${window.location.protocol}//${window.location.hostname}:8233`;
}

export function temporalWorkflowUrl(callId: string): string {
  return `${temporalUiBase()}/namespaces/default/workflows/call-${encodeURIComponent(callId)}`;
}

/**
 * Ask the API for the HttpOnly cookie that lets the Temporal Web UI decode payloads for this
 * supervisor (the UI's codec setting "include credentials"); roles that may not decode get none.
 */
export async function startCodecSession(): Promise<void> {
  try {
    await apiRequest<void>("POST", "/api/session/codec", { body: {}, token: token() });
  } catch {
    // Not fatal: the dashboard works without it; the Temporal UI then shows payloads encrypted.
  }
}

export async function endCodecSession(): Promise<void> {
  try {
    await apiRequest<void>("DELETE", "/api/session/codec");
  } catch {
    // The cookie expires on its own (CODEC_SESSION_TTL_S).
  }
}
