"""The `ops` command line's arguments: every command with `--help` and `--json`."""

from __future__ import annotations

import argparse
import re
from datetime import timedelta
from pathlib import Path

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def duration(text: str) -> timedelta:
    """`90s`, `15m`, `24h`, `7d`."""
    got = _DURATION.match(text.strip())
    if not got:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30m, 24h or 7d")
    return timedelta(**{_UNITS[got.group(2)]: float(got.group(1))})


def call_id_arg(text: str) -> str:
    from core.models import is_call_id

    if not is_call_id(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a call id")
    return text


def build_id_arg(text: str) -> str:
    from core.settings import BUILD_ID

    if not BUILD_ID.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a build id (letters, digits, . - _ +)")
    return text


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine output: JSON on stdout")
    root = argparse.ArgumentParser(
        prog="python -m ops",
        description="Ops for the call center: calls, failed recording pipelines, post-call "
        "analysis and its webhooks, the pre-deploy "
        "history check, Temporal setup, deploys with Worker Versioning. Settings come from the environment, .env and "
        ".devstack/env. Exit codes: 0 ok, 1 a check or an action failed, 2 usage, "
        "3 Temporal or PostgreSQL unreachable.",
    )
    root.add_argument("--json", dest="json_root", action="store_true",
                      help="machine output: JSON on stdout")  # fmt: skip
    groups = root.add_subparsers(
        dest="group",
        metavar="{calls,recordings,analysis,webhooks,callbacks,campaigns,histories,temporal,deploy}",
    )
    groups.required = True

    calls = groups.add_parser("calls", help="list, show and erase calls", parents=[common])
    cs = calls.add_subparsers(dest="command", required=True)
    p = cs.add_parser("list", help="calls, newest first (PostgreSQL)", parents=[common])
    p.add_argument("--status", choices=("active", "ended", "all"), default="all")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p = cs.add_parser("show", help="one call: row, recording, erasure", parents=[common])
    p.add_argument("call_id", type=call_id_arg)
    p = cs.add_parser(
        "erase",
        help="erase a finished call everywhere (EraseCallWorkflow, as DELETE /api/calls/{id})",
        parents=[common],
    )
    p.add_argument("call_id", type=call_id_arg)
    p.add_argument("--by", default="ops-cli", help="who asks, for the erasure record")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")

    rec = groups.add_parser("recordings", help="failed recording pipelines", parents=[common])
    rs = rec.add_subparsers(dest="command", required=True)
    p = rs.add_parser(
        "failed",
        help="pipelines whose latest run failed, and why (RecordingStatus='failed')",
        parents=[common],
    )
    p.add_argument("--since", type=duration, help="only those failed within e.g. 24h, 7d")
    p = rs.add_parser(
        "retry",
        help="replay failed pipelines (workflows.client.retry_recording), with a progress bar",
        parents=[common],
    )
    p.add_argument("call_ids", nargs="*", type=call_id_arg, metavar="CALL_ID")
    p.add_argument("--all-failed", action="store_true", help="every failed pipeline")
    p.add_argument("--since", type=duration, help="with --all-failed: failed within e.g. 24h")
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to this long for each replay to store its recording (default: don't)",
    )
    p.add_argument("--concurrency", type=int, default=16, help="replays at once (default 16)")

    ana = groups.add_parser("analysis", help="after the call: analyse again", parents=[common])
    ans = ana.add_subparsers(dest="command", required=True)
    p = ans.add_parser(
        "rerun",
        help="a new run of analysis-<id> for an ended call (as POST /api/calls/{id}/analysis/"
        "rerun); exits 1 when refused",
        parents=[common],
    )
    p.add_argument("call_id", type=call_id_arg)

    hooks = groups.add_parser("webhooks", help="call.ended / call.analyzed deliveries",
                              parents=[common])  # fmt: skip
    whs = hooks.add_subparsers(dest="command", required=True)
    p = whs.add_parser(
        "list", help="webhook messages, newest first: attempts, last status", parents=[common]
    )
    p.add_argument("--call", type=call_id_arg, metavar="CALL_ID", help="only this call's")
    p.add_argument("--undelivered", action="store_true", help="only those not delivered yet")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p = whs.add_parser(
        "replay",
        help="deliver stored messages again under their own webhook-id (as POST "
        "/api/webhooks/{id}/replay); exits 1 when any is refused",
        parents=[common],
    )
    p.add_argument("msg_ids", nargs="+", metavar="MSG_ID")

    cbs = groups.add_parser("callbacks", help="callbacks customers asked for", parents=[common])
    cbc = cbs.add_subparsers(dest="command", required=True)
    p = cbc.add_parser("list", help="callbacks, soonest due first (numbers masked)",
                       parents=[common])  # fmt: skip
    p.add_argument("--status", choices=["scheduled", "dialing", "completed", "failed", "cancelled"])
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p = cbc.add_parser("cancel", help="cancel callbacks (as DELETE /api/callbacks/{id}); exits 1 "
                       "when any is refused", parents=[common])  # fmt: skip
    p.add_argument("callback_ids", nargs="+", metavar="CALLBACK_ID")

    cps = groups.add_parser("campaigns", help="outbound campaigns", parents=[common])
    cpc = cps.add_subparsers(dest="command", required=True)
    p = cpc.add_parser("list", help="campaigns, newest first, with their counts",
                       parents=[common])  # fmt: skip
    p.add_argument("--status", choices=["scheduled", "running", "paused", "completed", "cancelled"])
    for what in ("pause", "resume", "cancel"):
        p = cpc.add_parser(what, help=f"{what} campaigns (as POST /api/campaigns/{{id}}/{what}); "
                           "exits 1 when any is refused", parents=[common])  # fmt: skip
        p.add_argument("campaign_ids", nargs="+", metavar="CAMPAIGN_ID")

    hist = groups.add_parser("histories", help="workflow histories", parents=[common])
    hs = hist.add_subparsers(dest="command", required=True)
    p = hs.add_parser(
        "check",
        help="replay running and recent histories against this code (run before every deploy); "
        "exits 1 on non-determinism",
        parents=[common],
    )
    p.add_argument("--since", type=duration, default=timedelta(days=2),
                   help="closed within this long (default 2d); running ones always")  # fmt: skip
    p.add_argument("--limit", type=int, default=1000, help="at most this many (default 1000)")
    p.add_argument("--task-queue", help="default TEMPORAL_TASK_QUEUE")
    p.add_argument("--bridge", action="store_true",
                   help="leave out the calls of unversioned workers: they finish on their own "
                   "(the deploy from release 4, docs/deploy.md); pinned ones always are")  # fmt: skip
    p.add_argument("--files", type=Path, metavar="PATH",
                   help="replay exported JSON histories (a file or a folder) instead")  # fmt: skip
    p = hs.add_parser(
        "export",
        help="a call's history as Temporal stores it (payloads stay encrypted)",
        parents=[common],
    )
    p.add_argument("call_id", type=call_id_arg)
    p.add_argument("--recording", action="store_true", help="the recording pipeline's instead")
    p.add_argument("-o", "--output", type=Path, help="write to this file (default stdout)")

    tmp = groups.add_parser("temporal", help="Temporal namespace setup", parents=[common])
    ts = tmp.add_subparsers(dest="command", required=True)
    p = ts.add_parser(
        "setup",
        help="register the search attributes (or print the Temporal Cloud command) and "
        "create/update the retention schedule",
        parents=[common],
    )
    p.add_argument("--no-schedule", action="store_true", help="skip the retention schedule")

    tel = groups.add_parser("telephony", help="LiveKit SIP trunks and rule", parents=[common])
    tls = tel.add_subparsers(dest="command", required=True)
    tls.add_parser(
        "setup",
        help="create (or find) the inbound trunk, its dispatch rule to the agent and the "
        "outbound trunk from the SIP_* settings (idempotent)",
        parents=[common],
    )

    dep = groups.add_parser(
        "deploy",
        help="Worker Versioning: versions, their calls, promote, drain (docs/deploy.md)",
        description="Calls stay pinned to the Worker Deployment Version (WORKER_DEPLOYMENT_NAME "
        "+ WORKER_BUILD_ID) they started on. A deploy starts the new version's workers beside "
        "the old ones, promotes it, and stops the old workers once wait-drained returns.",
        parents=[common],
    )
    ds = dep.add_subparsers(dest="command", required=True)
    ds.add_parser(
        "status",
        help="current and ramping version, every version's state and running calls "
        "(and calls of unversioned workers)",
        parents=[common],
    )
    p = ds.add_parser(
        "promote",
        help="make BUILD_ID the current version: new calls start on it (refused while calls "
        "of unversioned workers run: they would move to it)",
        parents=[common],
    )
    p.add_argument("build_id", type=build_id_arg, metavar="BUILD_ID")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long for the version's workers to poll (default: don't)")  # fmt: skip
    p.add_argument(
        "--take-over-unversioned",
        action="store_true",
        help="promote even though calls of unversioned workers run: they finish on BUILD_ID's "
        "code, which must then replay their histories (`ops histories check`)",
    )
    p = ds.add_parser(
        "wait-drained",
        help="wait until no call runs on BUILD_ID (or on unversioned workers): its workers "
        "may stop then; exits 1 on timeout",
        parents=[common],
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("build_id", nargs="?", type=build_id_arg, metavar="BUILD_ID")
    target.add_argument("--unversioned", action="store_true",
                        help="the calls started on unversioned workers (the release before "
                        "versioning)")  # fmt: skip
    p.add_argument("--timeout", type=duration, default=timedelta(hours=3),
                   help="give up after this long (default 3h: the longest call is 2h)")  # fmt: skip
    return root
