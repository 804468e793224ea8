/**
 * The supervisor dashboard: sign in at the organisation's identity provider (or with an API
 * token), watch the call list live, open a call (`#/calls/<id>`) to follow its transcript,
 * alerts and recording, and act on it.
 */

import "./dashboard.css";

import { ApiError, apiRequest, isRecord, wsUrl, type CallList, type CallSummary } from "../shared/api";
import { byId, clear, h } from "../shared/dom";
import { LiveSocket } from "../shared/live";
import { CallView } from "./call/view";
import { DESK_ROUTE, DeskView } from "./desk";
import { FAILED_ROUTE, FailedRecordingsView, mountFailedLink } from "./failed";
import { CALLBACKS_ROUTE, CAMPAIGNS_ROUTE, CallbacksView, CampaignsView, mountOutboundLinks } from "./outbound";
import { CallListView } from "./list";
import { mountDialer } from "./phone";
import { searchParams, SearchView } from "./search";
import {
  api,
  currentSession,
  currentToken,
  endSession,
  forgetToken,
  loginUrl,
  saveToken,
  signInOptions,
  startCodecSession,
  temporalUiBase,
  token,
  whenExpired,
  wsProtocols,
  type SessionInfo,
} from "./session";
import { setLive } from "./ui";

const signin = byId("signin");
const signinForm = byId<HTMLFormElement>("signin-form");
const tokenInput = byId<HTMLInputElement>("token-input");
const signinError = byId("signin-error");
const signinButton = byId<HTMLButtonElement>("signin-button");
const oidcSignin = byId<HTMLAnchorElement>("oidc-signin");
const signedInAs = byId("signed-in-as");
const app = byId("app");
const main = byId("main");
const listLive = byId("list-live");

let listSocket: LiveSocket | null = null;
let view: CallView | null = null;
let list: CallListView | null = null;
let search: SearchView | null = null;
let failed: FailedRecordingsView | null = null;
let outbound: CallbacksView | CampaignsView | null = null;
let desk: DeskView | null = null;
/** A rep only (no supervisor, ops or admin role): the Desk is all they may see. */
let deskOnly = false;
const WATCHERS = ["supervisor", "ops", "admin"];

function showSignin(message?: string): void {
  desk?.destroy();
  desk = null;
  listSocket?.stop();
  listSocket = null;
  view?.destroy();
  view = null;
  app.hidden = true;
  signin.hidden = false;
  signinError.hidden = !message;
  signinError.textContent = message ?? "";
  tokenInput.value = "";
  void offerIdentityProvider();
}

/** Show "Sign in with your organisation" when the API signs people in at an identity provider. */
async function offerIdentityProvider(): Promise<void> {
  const href = loginUrl(await signInOptions());
  oidcSignin.hidden = !href;
  // With an identity provider, the token is the secondary way in (scripts, devstack).
  byId("token-or").hidden = !href;
  byId("token-only").hidden = !!href;
  signinButton.classList.toggle("btn-primary", !href);
  signinButton.classList.toggle("btn-secondary", !!href);
  if (href) {
    oidcSignin.href = href;
    oidcSignin.focus();
  } else {
    tokenInput.focus();
  }
}

signinForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const candidate = tokenInput.value.trim();
  if (!candidate) {
    signinError.textContent = "Enter your API token.";
    signinError.hidden = false;
    return;
  }
  signinButton.disabled = true;
  signinError.hidden = true;
  try {
    // Any read the supervisor roles may do proves the token: 401 unknown, 403 wrong role; a
    // 403 may still be a rep's, whom the Desk takes.
    try {
      await apiRequest<CallList>("GET", "/api/calls?status=active&limit=1", { token: candidate });
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 403)) throw err;
      await apiRequest("GET", "/api/desk/me", { token: candidate });
    }
    saveToken(candidate);
    void startFor();
  } catch (err) {
    const text =
      err instanceof ApiError && err.status === 401
        ? "That token is not valid."
        : err instanceof ApiError && err.status === 403
          ? `This token may not watch calls: ${err.message}`
          : `Sign-in failed: ${err instanceof ApiError ? err.message : String(err)}`;
    signinError.textContent = text;
    signinError.hidden = false;
  } finally {
    signinButton.disabled = false;
  }
});

byId("signout-button").addEventListener("click", () => {
  forgetToken();
  void endSession(); // revoked server-side: the Temporal UI's codec refuses the cookie from now on
  window.location.hash = "";
  showSignin();
});

whenExpired((message) => {
  forgetToken();
  showSignin(`Signed out: ${message}`);
});

/** Start the page the caller's roles allow: the Desk alone for a rep, else the whole dashboard. */
async function startFor(session?: SessionInfo): Promise<void> {
  let who = session;
  try {
    who ??= await api<SessionInfo>("GET", "/api/session");
  } catch {
    who = undefined;
  }
  const roles = who?.roles ?? [];
  deskOnly = roles.includes("rep") && !roles.some((r) => WATCHERS.includes(r));
  if (deskOnly) startDesk(who);
  else startApp(who);
}

function startDesk(session?: SessionInfo): void {
  void showWho(session);
  signin.hidden = true;
  app.hidden = false;
  document.querySelector<HTMLElement>(".sidebar")?.setAttribute("hidden", "");
  listLive.hidden = true;
  if (window.location.hash !== DESK_ROUTE) window.location.hash = DESK_ROUTE;
  route();
}

function startApp(session?: SessionInfo): void {
  if (token()) void startCodecSession(); // a session cookie already serves the codec
  void showWho(session);
  signin.hidden = true;
  app.hidden = false;
  mountDeskLink();
  const temporal = byId<HTMLAnchorElement>("temporal-link");
  temporal.href = `${temporalUiBase()}/namespaces/default/workflows`;
  list ??= new CallListView(
    {
      list: byId<HTMLUListElement>("call-list"),
      error: byId("list-error"),
      more: byId<HTMLButtonElement>("load-more"),
      tabs: byId("status-tabs"),
      activeCount: byId("active-count"),
      filter: byId<HTMLInputElement>("call-filter"),
    },
    (callId) => {
      window.location.hash = `#/calls/${callId}`;
    },
  );
  void list.load(false);
  listSocket?.stop();
  listSocket = new LiveSocket({
    url: () => wsUrl("/ws/calls", {}),
    protocols: wsProtocols,
    onMessage: (msg) => {
      if (msg.type === "snapshot" && Array.isArray(msg.calls)) {
        list?.applySnapshot(msg.calls as CallSummary[]);
        renderOverview();
      } else if (msg.type === "snapshot_more" && Array.isArray(msg.calls)) {
        for (const call of msg.calls as CallSummary[]) list?.applyUpdate(call);
        renderOverview();
      } else if (msg.type === "call_updated" && isRecord(msg.call)) {
        list?.applyUpdate(msg.call as unknown as CallSummary);
        renderOverview();
      }
    },
    onState: (state, detail) => {
      setLive(listLive, state, detail);
      if (state === "refused") showSignin(`Signed out: ${detail ?? "the server refused the token"}`);
    },
  });
  listSocket.start();
  void mountFailedLink(document.querySelector<HTMLElement>(".topbar-right") ?? app);
  mountOutboundLinks(document.querySelector<HTMLElement>(".topbar-right") ?? app);
  route();
}

function mountDeskLink(): void {
  const bar = document.querySelector<HTMLElement>(".topbar-right");
  if (!bar || bar.querySelector("#desk-link")) return;
  bar.prepend(h("a", { class: "btn btn-ghost btn-sm", id: "desk-link", href: DESK_ROUTE }, "Desk"));
}

function route(): void {
  failed?.destroy();
  failed = null;
  outbound?.destroy();
  outbound = null;
  if (window.location.hash === DESK_ROUTE || deskOnly) {
    view?.destroy();
    view = null;
    list?.select(null);
    search = null;
    desk ??= new DeskView(main);
    return;
  }
  desk?.destroy();
  desk = null;
  if (window.location.hash === FAILED_ROUTE) {
    view?.destroy();
    view = null;
    list?.select(null);
    search = null;
    failed = new FailedRecordingsView(main);
    return;
  }
  if (window.location.hash === CALLBACKS_ROUTE || window.location.hash === CAMPAIGNS_ROUTE) {
    view?.destroy();
    view = null;
    list?.select(null);
    search = null;
    outbound = window.location.hash === CALLBACKS_ROUTE ? new CallbacksView(main) : new CampaignsView(main);
    return;
  }
  const params = searchParams(window.location.hash);
  if (params) {
    view?.destroy();
    view = null;
    list?.select(null);
    search = new SearchView(main, params, (callId) => (window.location.hash = `#/calls/${callId}`));
    return;
  }
  search = null;
  const match = /^#\/calls\/([a-z0-9]+)$/.exec(window.location.hash);
  const callId = match?.[1] ?? null;
  list?.select(callId);
  if (view && view.callId === callId) return;
  view?.destroy();
  view = null;
  if (callId) {
    view = new CallView(callId, main, list?.get(callId), (call) => list?.applyUpdate(call));
  } else {
    renderOverview();
  }
}

/** The landing panel when no call is open: live numbers for the floor. */
function renderOverview(): void {
  if (view || search || failed || outbound || desk || !list) return;
  const live = list.live();
  const count = (pred: (c: CallSummary) => boolean) => live.filter(pred).length;
  const card = (label: string, value: number, tone: string, id: string) =>
    h("div", { class: `stat big ${tone}` }, h("span", { class: "stat-label" }, label), h("strong", { class: "stat-value", id }, String(value)));
  clear(main);
  main.append(
    h(
      "section",
      { class: "overview" },
      h("h1", {}, "Floor overview"),
      h("p", { class: "muted" }, "Live numbers across the calls in the list. Pick a call to follow its transcript and act on it."),
      h(
        "div",
        { class: "stats" },
        card("Live calls", live.length, "", "ov-live"),
        card("Waiting for Sarah", count((c) => c.status === "waiting_for_agent"), "stat-amber", "ov-waiting"),
        card("Silence alerts", live.reduce((n, c) => n + c.silence_alerts, 0), "stat-amber", "ov-silence"),
        card("Keyword alerts", live.reduce((n, c) => n + c.keyword_alerts, 0), "stat-red", "ov-keyword"),
      ),
      h(
        "div",
        { class: "panel empty-detail" },
        h("h2", {}, live.length ? "Select a call on the left" : "It's quiet right now"),
        h(
          "p",
          { class: "muted" },
          live.length
            ? "The transcript streams live; silence and keyword alerts show as they happen."
            : "New calls appear on the left the moment a customer presses Call.",
        ),
      ),
    ),
  );
}

window.addEventListener("hashchange", route);

/** Who the audit will name: the signed-in person, or the API token's name. */
async function showWho(session?: SessionInfo): Promise<void> {
  try {
    const who = session ?? (await api<SessionInfo>("GET", "/api/session"));
    const head = document.querySelector<HTMLElement>(".sidebar-head");
    if (head) mountDialer(head, who.roles, (callId) => (window.location.hash = `#/calls/${callId}`));
    signedInAs.textContent = who.person;
    signedInAs.title = `Signed in as ${who.person} (${who.roles.join(", ")})`;
    signedInAs.hidden = false;
  } catch {
    signedInAs.hidden = true;
  }
}

async function boot(): Promise<void> {
  if (currentToken()) return startFor();
  const session = await currentSession();
  if (session) void startFor(session);
  else showSignin();
}

void boot();
