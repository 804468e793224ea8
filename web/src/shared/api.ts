/**
 * HTTP client for the call center API. Every error the API returns has the contract's shape
 * `{"error": {"code", "message", "field"?}}`; `ApiError` carries it (plus `Retry-After` for 429),
 * and a network failure becomes an `ApiError` with status 0 so callers handle one type.
 */

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly field: string | undefined;
  /** Seconds from the `Retry-After` header of a 429, when the server sent one. */
  readonly retryAfter: number | undefined;

  constructor(status: number, code: string, message: string, field?: string, retryAfter?: number) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.field = field;
    this.retryAfter = retryAfter;
  }
}

export interface RequestOptions {
  body?: unknown;
  token?: string | null;
  signal?: AbortSignal;
}

/** Send a JSON request; resolve with the parsed body of a 2xx, reject with `ApiError` otherwise. */
export async function apiRequest<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  if (opts.token) headers["Authorization"] = `Bearer ${opts.token}`;
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      signal: opts.signal,
      cache: "no-store",
    });
  } catch (err) {
    if (err instanceof DOMException && err.name === "AbortError") throw err;
    throw new ApiError(0, "network", "The server could not be reached. Check your connection and try again.");
  }
  const text = await response.text();
  let data: unknown = undefined;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = undefined;
    }
  }
  if (response.ok) return data as T;
  throw errorFrom(response, data);
}

function errorFrom(response: Response, data: unknown): ApiError {
  const retryHeader = response.headers.get("Retry-After");
  const retryAfter = retryHeader !== null && /^\d+$/.test(retryHeader.trim()) ? Number(retryHeader) : undefined;
  const err = isRecord(data) && isRecord(data.error) ? data.error : undefined;
  const code = typeof err?.code === "string" ? err.code : `http_${response.status}`;
  const message =
    typeof err?.message === "string" && err.message
      ? err.message
      : `The server answered ${response.status} ${response.statusText || ""}`.trim();
  const field = typeof err?.field === "string" ? err.field : undefined;
  return new ApiError(response.status, code, message, field, retryAfter);
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** `ws(s)://<this host><path>` with the given query parameters. */
export function wsUrl(path: string, params: Record<string, string | number | undefined>): string {
  const url = new URL(path, window.location.href);
  url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined) url.searchParams.set(key, String(value));
  }
  return url.toString();
}

// --- contract shapes (api/schemas.py) ----------------------------------------------------------

/** A LiveKit token for one call's room: the customer's, or a supervisor's. */
export interface RoomGrant {
  call_id: string;
  room_name: string;
  token: string;
  livekit_url: string;
  participant_identity: string;
  expires_at: string;
}

export type CallCreated = RoomGrant;

export interface CallSummary {
  call_id: string;
  room_name: string;
  customer_name: string | null;
  status: string;
  recording_status: string;
  created_at: string | null;
  agent_joined_at?: string | null;
  ended_at?: string | null;
  end_reason?: string | null;
  silence_alerts: number;
  keyword_alerts: number;
  last_seq: number;
  live: boolean;
  channel?: "web" | "phone";
  direction?: "inbound" | "outbound";
  /** Masked (`+1•••••0001`); in full only in an admin's call detail; null when unknown. */
  phone?: string | null;
}

export interface CallList {
  calls: CallSummary[];
  next_cursor: string | null;
}

/** A callback's call and the call the customer asked on (`GET /api/calls/{id}` `links`). */
export interface CallLink {
  call_id: string | null;
  callback_id: string;
}

export interface CallLinks {
  callback_of: CallLink | null;
  called_back_in: CallLink[];
}

export interface CallDetail extends CallSummary {
  source?: "workflow" | "database";
  state?: Record<string, unknown> | null;
  links?: CallLinks;
}

/** One stored call event as the WebSocket and `/transcript` deliver it. */
export interface CallEvent {
  type: string;
  call_id: string;
  seq: number;
  at: string | null;
  data: Record<string, unknown>;
  speaker?: string | null;
  text?: string | null;
}

export interface LiveKitGrant extends RoomGrant {
  can_publish: boolean;
  hidden: boolean;
}

export interface RecordingSegment {
  index: number;
  url: string;
  size_bytes: number;
  duration_s: number;
  sha256: string;
  incomplete: boolean;
  /** The segment's time zero on the call's clock (ISO 8601), null when unknown. */
  started_at: string | null;
}

export interface RecordingLink {
  call_id: string;
  url: string;
  expires_at: string;
  size_bytes: number;
  duration_s: number;
  sha256: string;
  incomplete: boolean;
  started_at?: string | null;
  clock?: "egress" | "event" | "none";
  segments?: RecordingSegment[];
}

export interface Accepted {
  call_id: string;
  action: string;
  status: string;
}
