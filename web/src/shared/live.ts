/**
 * A WebSocket that reconnects with backoff. The URL is rebuilt for every attempt, so a caller
 * can put the last sequence number it saw into `?after=` and miss nothing across a reconnect.
 * The API refuses a socket after the upgrade with an `error` frame and close code 4000 + the HTTP
 * status (4401 bad token, 4403 role, 4404 no such call, 4422 bad query): those are final, no retry.
 */

export type LiveState = "connecting" | "open" | "reconnecting" | "closed" | "refused";

export interface LiveOptions {
  url: () => string;
  /** Subprotocols for each attempt, e.g. `["bearer", token]`: a token never goes in the URL. */
  protocols?: () => string[];
  onMessage: (message: Record<string, unknown>) => void;
  /** `detail` is the server's reason on a refusal (from its `error` frame or the close reason). */
  onState?: (state: LiveState, detail?: string, closeCode?: number) => void;
}

function isRefusal(code: number): boolean {
  return code === 1008 || (code >= 4400 && code < 4500);
}

export class LiveSocket {
  private ws: WebSocket | null = null;
  private timer: number | undefined;
  private attempt = 0;
  private stopped = false;
  private lastError: string | undefined;

  constructor(private readonly opts: LiveOptions) {}

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    window.clearTimeout(this.timer);
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close(1000, "closed by the dashboard");
      this.ws = null;
    }
    this.opts.onState?.("closed");
  }

  /** Drop the current connection and open a new one at once (e.g. after a resync request). */
  reconnectNow(): void {
    if (this.stopped) return;
    window.clearTimeout(this.timer);
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close(1000, "reconnecting");
      this.ws = null;
    }
    this.connect();
  }

  private connect(): void {
    this.opts.onState?.(this.attempt === 0 ? "connecting" : "reconnecting");
    let ws: WebSocket;
    try {
      ws = new WebSocket(this.opts.url(), this.opts.protocols?.());
    } catch (err) {
      this.scheduleReconnect(String(err));
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.opts.onState?.("open");
    };
    ws.onmessage = (event: MessageEvent) => {
      if (typeof event.data !== "string") return;
      let parsed: unknown;
      try {
        parsed = JSON.parse(event.data);
      } catch {
        return; // not ours: the server speaks JSON only
      }
      if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) {
        const message = parsed as Record<string, unknown>;
        const error = message.error as { message?: unknown } | undefined;
        if (message.type === "error" && typeof error?.message === "string") this.lastError = error.message;
        this.opts.onMessage(message);
      }
    };
    ws.onclose = (event: CloseEvent) => {
      this.ws = null;
      if (this.stopped) return;
      if (isRefusal(event.code)) {
        this.stopped = true;
        this.opts.onState?.("refused", this.lastError || event.reason || "the server refused the connection", event.code);
        return;
      }
      this.scheduleReconnect(event.reason);
    };
  }

  private scheduleReconnect(detail?: string): void {
    this.attempt += 1;
    const base = Math.min(10_000, 500 * 2 ** Math.min(this.attempt - 1, 5));
    const delay = base / 2 + Math.random() * (base / 2);
    this.opts.onState?.("reconnecting", detail);
    this.timer = window.setTimeout(() => this.connect(), delay);
  }
}
