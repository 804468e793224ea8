"""The dashboard's Callbacks and Campaigns views in Chromium against the real API process: the
links, the callbacks due soon / failed / by status with Cancel, the campaigns' progress with
Pause / Resume / Cancel, each sending its request; axe finds nothing. The answers are given at
the HTTP boundary here (this suite runs no Temporal; the endpoints themselves are
tests/api/test_callbacks_api.py's and tests/api/test_campaigns_api.py's)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from playwright.async_api import Page, Route, expect

from tests.web.conftest import WebApi
from tests.web.test_accessibility import _show, axe
from tests.web.test_dashboard import sign_in


def callback(cid: str, status: str, hours: float, end_reason: str = "") -> dict[str, Any]:
    due = (datetime.now(UTC) + timedelta(hours=hours)).isoformat()
    return {"id": cid, "status": status, "at": due, "due_at": due, "timezone": "America/Chicago",
            "phone": "+1•••••0142", "reason": "test drive", "call_id": "",
            "end_reason": end_reason, "attempts": []}  # fmt: skip


def campaign(cid: str, status: str) -> dict[str, Any]:
    return {"id": cid, "name": f"Spring {cid[-1]}", "status": status,
            "timezone": "America/Chicago", "window": "09:00-20:00", "max_concurrent": 5,
            "start_at": datetime.now(UTC).isoformat(), "reason": "", "on_do_not_call": 0,
            "progress": {"dialled": 40, "answered": 20, "busy": 10, "no_answer": 8, "failed": 2,
                         "skipped": 1, "remaining": 59, "total": 100}}  # fmt: skip


async def test_callbacks_and_campaigns_views(page: Page, web_api: WebApi) -> None:
    callbacks = [callback("cbsoon000001", "scheduled", 2), callback("cblater00001", "scheduled", 72),
                 callback("cbfailed0001", "failed", -5, "attempts_exhausted"),
                 callback("cbdone000001", "completed", -20, "answered")]  # fmt: skip
    campaigns = {"cpaaaaaaaaaa1": campaign("cpaaaaaaaaaa1", "running"),
                 "cpbbbbbbbbbb2": campaign("cpbbbbbbbbbb2", "completed")}  # fmt: skip
    sent: list[str] = []

    async def answer(route: Route) -> None:
        req = route.request
        path = req.url.split("/api/", 1)[1]
        body: Any
        if req.method == "DELETE":
            sent.append(f"DELETE {path}")
            cid = path.split("/")[1]
            for c in callbacks:
                if c["id"] == cid:
                    c["status"] = "cancelled"
            body = next(c for c in callbacks if c["id"] == cid)
        elif path.startswith("callbacks"):
            body = {"callbacks": callbacks}
        elif req.method == "POST":
            sent.append(f"POST {path}")
            cid, what = path.split("/")[1:3]
            campaigns[cid]["status"] = {"pause": "paused", "resume": "running",
                                        "cancel": "cancelled"}[what]  # fmt: skip
            body = campaigns[cid]
        elif path == "campaigns":
            body = {"campaigns": list(campaigns.values())}
        else:
            body = campaigns[path.split("/")[1]]
        await route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    await page.route("**/api/callbacks**", answer)
    await page.route("**/api/campaigns**", answer)
    await sign_in(page, web_api.supervisor_token)
    await page.locator("#callbacks-link").click()
    await expect(page.locator("#callbacks-soon tr[data-callback]")).to_have_count(1)
    await expect(page.locator("#callbacks-soon")).to_contain_text("+1•••••0142")
    await expect(page.locator("#callbacks-failed")).to_contain_text("attempts_exhausted")
    await expect(page.locator("#callbacks-all tr[data-callback]")).to_have_count(4)
    await page.locator("#callbacks-filter").select_option("scheduled")
    await expect(page.locator("#callbacks-all tr[data-callback]")).to_have_count(2)
    assert not (v := await axe(page)), "callbacks:\n" + _show(v)
    await page.locator('#callbacks-soon button[data-cancel="cbsoon000001"]').click()
    await expect(page.locator("#callbacks-soon tr[data-callback]")).to_have_count(0)
    assert sent == ["DELETE callbacks/cbsoon000001"]

    await page.locator("#campaigns-link").click()
    running = page.locator('#campaigns-table tr[data-campaign="cpaaaaaaaaaa1"]')
    await expect(running).to_contain_text("41/100")
    await expect(running).to_contain_text("20 answered")
    ended = page.locator('#campaigns-table tr[data-campaign="cpbbbbbbbbbb2"]')
    await expect(ended).to_contain_text("completed")
    assert await ended.locator("button").count() == 0
    assert not (v := await axe(page)), "campaigns:\n" + _show(v)
    await running.locator('button[data-action="pause"]').click()
    await expect(running.locator('button[data-action="resume"]')).to_be_visible()
    await expect(running).to_contain_text("paused")
    await running.locator('button[data-action="resume"]').click()
    await expect(running.locator('button[data-action="pause"]')).to_be_visible()
    await running.locator('button[data-action="cancel"]').click()
    await expect(running).to_contain_text("cancelled")
    assert await running.locator("button").count() == 0
    assert sent[1:] == ["POST campaigns/cpaaaaaaaaaa1/pause", "POST campaigns/cpaaaaaaaaaa1/resume",
                        "POST campaigns/cpaaaaaaaaaa1/cancel"]  # fmt: skip


async def test_a_callback_is_scheduled_from_the_dashboard_at_the_customers_local_time(
    page: Page, web_api: WebApi
) -> None:
    """The Callbacks view's form sends `POST /api/callbacks` with `at` carrying the offset of
    the customer's zone at that date (not the browser's): 3 pm in Chicago is -06:00 in January
    and -05:00 in July. A bad number never leaves the page; the API's 422 is shown as said."""
    posted: list[dict[str, Any]] = []

    async def answer(route: Route) -> None:
        req = route.request
        if req.method == "POST":
            body = json.loads(req.post_data or "{}")
            if body["at"].startswith("2020"):
                err = {"error": {"code": "invalid_input", "field": "at",
                                 "message": "at: the time is in the past"}}  # fmt: skip
                await route.fulfill(status=422, content_type="application/json",
                                    body=json.dumps(err))  # fmt: skip
                return
            posted.append(body)
            made = callback("cbnew0000001", "scheduled", 24) | {"at": body["at"]}
            await route.fulfill(status=201, content_type="application/json", body=json.dumps(made))
            return
        await route.fulfill(status=200, content_type="application/json",
                            body=json.dumps({"callbacks": []}))  # fmt: skip

    await page.route("**/api/callbacks**", answer)
    await sign_in(page, web_api.supervisor_token)
    await page.locator("#callbacks-link").click()
    form = page.locator("#callback-form")
    await expect(form).to_be_visible()
    assert not (v := await axe(page)), "callback form:\n" + _show(v)
    await page.locator("#callback-phone").fill("5551230001")
    await page.locator("#callback-submit").click()
    await expect(page.locator("#callback-error")).to_contain_text("E.164")
    assert posted == []
    for wall, offset in (("2027-01-15T15:00", "-06:00"), ("2027-07-15T15:00", "-05:00")):
        await page.locator("#callback-phone").fill("+15551230001")
        await page.locator("#callback-at").fill(wall)
        await page.locator("#callback-timezone").fill("America/Chicago")
        await page.locator("#callback-reason").fill("the Silverado test drive")
        await page.locator("#callback-submit").click()
        await expect(page.locator("#callback-phone")).to_have_value("")
        assert posted[-1] == {"phone": "+15551230001", "at": f"{wall}:00{offset}",
                              "timezone": "America/Chicago",
                              "reason": "the Silverado test drive"}  # fmt: skip
    await page.locator("#callback-phone").fill("+15551230001")
    await page.locator("#callback-at").fill("2027-01-15T15:00")
    await page.locator("#callback-timezone").fill("Mars/Olympus")  # never leaves the page
    await page.locator("#callback-submit").click()
    await expect(page.locator("#callback-error")).to_contain_text("Unknown time zone")
    await page.locator("#callback-timezone").fill("America/Chicago")
    await page.locator("#callback-at").fill("2020-01-15T15:00")
    await page.locator("#callback-submit").click()
    await expect(page.locator("#callback-error")).to_contain_text("at: the time is in the past")
    assert len(posted) == 2
