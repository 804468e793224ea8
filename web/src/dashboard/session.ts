/**
 * Two ways in. A person signs in at the organisation's identity provider (`/auth/login`): the
 * API then keeps the session and the browser only an HttpOnly cookie this code never sees;
 * requests carry it by themselves. A script-style API token (devstack, break-glass) is pasted
 * instead and lives in sessionStorage: it survives a reload of the tab but not closing it, and
 * other tabs or sites never see it. Every authenticated request goes through `api()`, which
 * signs the user out when the server says the token or session is no longer valid (401).
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

/** WebSocket subprotocols: the token pair when signed in by token; none with a session cookie. */
export function wsProtocols(): string[] {
  const t = token();
  return t ? ["bearer", t] : [];
}

export interface SessionInfo {
  person: string;
  roles: string[];
  via: "token" | "session";
  expires_at: string | null;
}

export interface SignInOptions {
  oidc: boolean;
  login_url: string | null;
}

/** The signed-in person of the session cookie, or null (none, expired or revoked). */
export async function currentSession(): Promise<SessionInfo | null> {
  try {
    return await apiRequest<SessionInfo>("GET", "/api/session");
  } catch {
    return null;
  }
}

export async function signInOptions(): Promise<SignInOptions> {
  try {
    return await apiRequest<SignInOptions>("GET", "/api/session/sign-in");
  } catch {
    return { oidc: false, login_url: null };
  }
}

/** Where the identity provider sends the browser back to: this page, as it is now. */
export function loginUrl(options: SignInOptions): string | null {
  if (!options.login_url) return null;
  const back = window.location.pathname + window.location.hash;
  return `${options.login_url}?return_to=${encodeURIComponent(back)}`;
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

/** Sign out on the server: the session (the identity provider's, or the codec cookie of a token
 * sign-in) is revoked for every API instance and the Temporal UI's codec, and its cookie cleared. */
export async function endSession(): Promise<void> {
  try {
    await apiRequest<void>("DELETE", "/api/session");
  } catch {
    // Unreachable now: the session still ends at its expiry (SESSION_TTL_S).
  }
}

let rolesOf: { token: string | null; roles: Promise<string[]> } | null = null;

/** The roles of whoever is signed in (token or session), asked once per token; [] if unknown. */
export function myRoles(): Promise<string[]> {
  const current = token();
  if (!rolesOf || rolesOf.token !== current) {
    rolesOf = { token: current, roles: api<SessionInfo>("GET", "/api/session").then((s) => s.roles, () => []) };
  }
  return rolesOf.roles;
}
