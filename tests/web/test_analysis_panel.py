"""After the call in the dashboard, in Chromium against the real API and PostgreSQL: the call
view's analysis panel (summary, the method said plainly, outcome, sentiment with its turning
point, fields, scorecard with pass / fail / not judged, deliveries), evidence that seeks the
recording to the cited line, Rerun and Replay only for ops, the report's analysis section, and
the search view's outcome, sentiment and score filters.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from playwright.async_api import Page, expect

from tests.web.conftest import CallTables, WebApi, screenshot
from tests.web.test_accessibility import _show, axe
from tests.web.test_dashboard import sign_in
from tests.web.test_playback import _current_time, _ended_call_with_recording

# The lines of tests/web/test_playback.py: ids line-1.0, line-6.0, line-12.0 said 1, 6, 12 s in.
SCORECARD = [
    {"id": "greeted_and_named", "passed": True, "evidence": ["line-1.0"], "note": "names her"},
    {"id": "recording_disclosed", "passed": False, "evidence": [], "note": "never said"},
    {"id": "need_identified", "passed": True, "evidence": ["line-6.0"], "note": "the RAV4 price"},
    {"id": "accurate_answers_from_tools", "passed": None, "evidence": [], "note": "not judged"},
    {"id": "next_step_agreed", "passed": True, "evidence": ["line-12.0"], "note": "manager"},
]


async def _analyse(tables: CallTables, call_id: str, method: str = "local", outcome: str = "follow_up",
                   sentiment: str = "negative", score: float | None = 0.75) -> None:  # fmt: skip
    doc = {
        "summary": 'The customer said: "Hi, I\'d like to talk to a manager about the RAV4 price."',
        "outcome": outcome,
        "sentiment": {"label": sentiment, "turning_points": [{"line_id": "line-6.0", "to": "negative"}]},
        "fields": {"vehicle": {"vin": None, "year": 2023, "make": "Toyota", "model": "RAV4"},
                   "budget_usd": None, "trade_in": None, "test_drive_booked": False,
                   "test_drive_at": None, "handoff_requested": True},
        "scorecard": SCORECARD,
        "method": method,
    }  # fmt: skip
    await tables.conn.execute(
        "INSERT INTO call_analyses (call_id, status, method, outcome, sentiment, score, document) "
        "VALUES ($1, 'done', $2, $3, $4, $5, $6::jsonb)",
        call_id, method, outcome, sentiment, score, json.dumps(doc),
    )  # fmt: skip
    for kind, status, attempts in (("call.ended", 200, 1), ("call.analyzed", 503, 4)):
        await tables.conn.execute(
            "INSERT INTO webhook_deliveries (id, call_id, event_type, payload, attempts, "
            "last_status, last_attempt_at, delivered_at) VALUES ($1, $2, $3, '{}', $4, $5, now(), "
            "CASE WHEN $5 = 200 THEN now() END)",
            f"msg_{call_id}_{kind.replace('.', '_')}_1", call_id, kind, attempts, status,
        )  # fmt: skip


async def test_call_view_shows_the_analysis_and_evidence_seeks_the_recording(
    page: Page, web_api: WebApi, tables: CallTables, tmp_path: Path
) -> None:
    call_id = await _ended_call_with_recording(tables, web_api, tmp_path)
    await _analyse(tables, call_id)
    await sign_in(page, web_api.supervisor_token)
    await page.goto(f"/dashboard#/calls/{call_id}")
    panel = page.locator("#analysis-panel")
    await expect(panel.locator("#analysis-method")).to_have_attribute("data-method", "local")
    await expect(panel.locator("#analysis-method")).to_contain_text(
        "local method, without a language model"
    )
    await expect(panel.locator("#analysis-summary")).to_contain_text("talk to a manager")
    await expect(panel.locator("#analysis-outcome")).to_have_text("Follow up")
    await expect(panel.locator("#analysis-sentiment")).to_have_text("Negative")
    await expect(panel.locator("#analysis-score")).to_have_text("75% (3 of 4 judged items passed)")
    fields = panel.locator("#analysis-fields")
    await expect(fields).to_contain_text("Vehicle make")
    await expect(fields).to_contain_text("Toyota")
    rows = panel.locator("#analysis-scorecard tbody tr")
    await expect(rows).to_have_count(5)
    await expect(panel.locator("#analysis-scorecard .verdict")).to_have_text(
        ["Pass", "Fail", "Pass", "Not judged", "Pass"]
    )
    deliveries = panel.locator("#analysis-deliveries tbody tr")
    await expect(deliveries).to_have_count(2)
    analyzed = panel.locator('tr[data-msg-id$="_call_analyzed_1"] td')
    await expect(analyzed.nth(0)).to_have_text("4")
    await expect(analyzed.nth(1)).to_have_text("HTTP 503")
    await expect(analyzed.nth(2)).to_have_text("not yet")
    await screenshot(page, "dashboard-analysis")

    # Evidence names the line it cites and seeks the recording to where it was said.
    await expect(page.locator("#recording-audio")).to_have_js_property(
        "readyState", 4, timeout=10_000
    )
    need = rows.filter(has=page.locator('th:text("Need identified")'))
    cite = need.locator("button.cite")
    await expect(cite).to_have_text(re.compile(r"line 2$"))
    await cite.click()
    said = page.locator('#transcript li[data-line-id="line-6.0"]')
    await expect(said).to_have_class(re.compile(r"\bcited\b"))
    await expect(said).to_have_class(re.compile(r"\bplaying\b"))
    assert abs(await _current_time(page) - 6.0) < 0.3
    # The turning point is a citation too.
    await panel.locator("#analysis-turns button.cite").click()
    await expect(said).to_have_class(re.compile(r"\bcited\b"))

    # A supervisor reads; only ops rerun and replay.
    await expect(panel.locator("#analysis-rerun")).to_have_count(0)
    await expect(panel.locator("button.replay")).to_have_count(0)

    # The report has the analysis too, with the method.
    await page.get_by_role("button", name="Report").click()
    await expect(page.locator("#report-analysis-method")).to_have_text("local")


async def test_ops_see_rerun_and_replay(page: Page, web_api: WebApi, tables: CallTables) -> None:
    call_id = await tables.add_call("Ops Reader", status="completed", recording_status="none")
    await tables.say(call_id, "assistant", "Hello, I'm Sarah.")
    await _analyse(tables, call_id, method="llm", outcome="resolved", sentiment="positive")
    await sign_in(page, web_api.ops_token)
    await page.goto(f"/dashboard#/calls/{call_id}")
    panel = page.locator("#analysis-panel")
    await expect(panel.locator("#analysis-method")).to_have_text(
        "Made by a language model (method: llm)."
    )
    await expect(panel.locator("#analysis-rerun")).to_be_visible()
    await expect(panel.locator("button.replay")).to_have_count(2)
    assert not (v := await axe(page)), "analysis panel:\n" + _show(v)
    # Cited lines this call never showed are named as such, not invented.
    await expect(panel.locator("#analysis-scorecard button.cite").first).to_have_text("▶ a line")

    # A call without an analysis says so, and ops can still ask for one.
    bare = await tables.add_call("No Analysis", status="completed", recording_status="none")
    await page.goto(f"/dashboard#/calls/{bare}")
    await expect(page.locator("#analysis-state")).to_contain_text("No analysis yet")
    await expect(page.locator("#analysis-rerun")).to_be_visible()


async def test_search_by_outcome_sentiment_and_score(
    page: Page, web_api: WebApi, tables: CallTables
) -> None:
    tag = f"An{datetime.now(UTC).strftime('%H%M%S%f')}"
    won = await tables.add_call(f"Wen {tag}", status="completed", recording_status="none")
    lost = await tables.add_call(f"Lou {tag}", status="completed", recording_status="none")
    await _analyse(tables, won, outcome="resolved", sentiment="positive", score=1.0)
    await _analyse(tables, lost, outcome="follow_up", sentiment="negative", score=0.25)
    await sign_in(page, web_api.supervisor_token)
    await page.goto(f"/dashboard#/search?q={tag}")
    rows = page.locator("#search-results tr")
    await expect(rows).to_have_count(2)
    await expect(rows.locator(".result-score")).to_have_text(["25%", "100%"])

    await page.get_by_label("Outcome").select_option("resolved")
    await page.get_by_role("button", name="Search", exact=True).click()
    await expect(page).to_have_url(re.compile(rf"#/search\?q={tag}&outcome=resolved$"))
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-call-id", won)
    await expect(rows.first.locator(".result-outcome")).to_have_text("Resolved")

    await page.goto(f"/dashboard#/search?q={tag}&sentiment=negative")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-call-id", lost)
    await expect(page.get_by_label("Sentiment")).to_have_value("negative")
    await page.goto(f"/dashboard#/search?q={tag}&score=0.5")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-call-id", won)
    await expect(page.get_by_label("QA score")).to_have_value("0.5")
    await screenshot(page, "dashboard-search-analysis")

    # A bad value in a shared link is refused by the API, naming the field.
    await page.goto(f"/dashboard#/search?q={tag}&score=2")
    await expect(page.locator("#search-error")).to_contain_text("score")


async def test_a_call_that_just_ended_shows_its_analysis_when_it_lands(
    page: Page, web_api: WebApi, tables: CallTables
) -> None:
    """The analysis runs seconds after the hang-up: the panel looks again by itself."""
    call_id = await tables.add_call("Just Ended", status="completed", recording_status="none")
    await tables.say(call_id, "customer", "I'm looking for a truck.")
    await sign_in(page, web_api.supervisor_token)
    await page.goto(f"/dashboard#/calls/{call_id}")
    await expect(page.locator("#analysis-state")).to_contain_text("No analysis yet")
    await _analyse(tables, call_id, outcome="resolved")
    await expect(page.locator("#analysis-outcome")).to_have_text("Resolved", timeout=15_000)
