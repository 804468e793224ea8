"""Playback in step with the transcript, in Chromium against the real API: a real Ogg/Opus
recording (the LiveKit emulator's encoder) stored in S3, the `recording` event that gives the
egress's start, and lines whose `started_at` lies at known offsets from it. A seek, by clicking
a line or moving the audio, must land on the line said at that instant.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.async_api import Page, Route, expect

from devstack.livekit.recording import write_recording
from tests.web.conftest import CallTables, WebApi, screenshot
from tests.web.test_dashboard import sign_in

# Offsets (s) into the recording at which each line was said.
LINES = [
    (1.0, "assistant", "Hello! Welcome to CME Auto Sales. My name is Sarah."),
    (6.0, "customer", "Hi, I'd like to talk to a manager about the RAV4 price."),
    (12.0, "assistant", "Of course. Let me note that for our sales manager."),
]
RECORDING_S = 18.0


async def _ended_call_with_recording(tables: CallTables, web_api: WebApi, tmp: Path) -> str:
    call_id = await tables.add_call("Jordan Lee", status="in_progress", recording_status="none")
    egress_start = datetime.now(UTC) - timedelta(seconds=60)
    egress_id = f"EG_{call_id}"
    await tables.add_event(
        call_id,
        "recording",
        {"status": "recording", "egress_id": egress_id, "started_at": egress_start.isoformat()},
    )
    seqs = []
    for offset, speaker, text in LINES:
        said = (egress_start + timedelta(seconds=offset)).isoformat()
        data = {"id": f"line-{offset}", "speaker": speaker, "text": text, "confidence": 0.97,
                "started_at": said, "ended_at": said, "interrupted": False}  # fmt: skip
        seqs.append(await tables.add_event(call_id, "final_transcript", data))
    await tables.add_event(call_id, "keyword_alert", {"line_seq": seqs[1], "keywords": ["manager"]})
    await tables.add_event(call_id, "status", {"status": "completed"})
    audio = await asyncio.to_thread(write_recording, tmp / "call.ogg", RECORDING_S, False)
    await tables.store_recording(
        call_id, web_api.s3, audio.path.read_bytes(), duration_s=audio.duration_s
    )
    return call_id


async def _current_time(page: Page) -> float:
    return float(await page.locator("#recording-audio").evaluate("a => a.currentTime"))


async def test_a_seek_lands_on_the_line_said_then(
    page: Page, web_api: WebApi, tables: CallTables, tmp_path: Path
) -> None:
    call_id = await _ended_call_with_recording(tables, web_api, tmp_path)
    await sign_in(page, web_api.supervisor_token)
    await page.goto(f"/dashboard#/calls/{call_id}")
    panel = page.locator("#recording-panel")
    await expect(panel.locator("#recording-audio")).to_have_js_property(
        "readyState", 4, timeout=10_000
    )
    await expect(page.locator("#playback-clock-source")).to_have_text("LiveKit egress start")
    lines = page.locator("#transcript li[data-at]")
    await expect(lines).to_have_count(3)

    # Clicking the second line plays from where it was said: 6 s into the egress.
    await lines.nth(1).click()
    await expect(lines.nth(1)).to_have_class(re.compile(r"\bplaying\b"))
    assert abs(await _current_time(page) - 6.0) < 0.3
    await expect(page.locator(".line.playing")).to_have_count(1)

    # Moving the audio itself (as its own controls do) moves the highlight: one clock.
    await page.locator("#recording-audio").evaluate("a => { a.currentTime = 13.5 }")
    await expect(lines.nth(2)).to_have_class(re.compile(r"\bplaying\b"))
    await expect(lines.nth(1)).not_to_have_class(re.compile(r"\bplaying\b"))
    await expect(page.locator("#playback-clock")).to_have_text("0:13")
    await page.locator("#recording-audio").evaluate("a => { a.currentTime = 0.5 }")
    await expect(page.locator(".line.playing")).to_have_count(0)  # nothing said yet

    # The keyword alert is a marker on the timeline at its line; it seeks there.
    marker = page.locator(".scrub-marker.marker-red")
    await expect(marker).to_have_count(1)
    assert "Keyword alert: manager" in (await marker.get_attribute("aria-label") or "")
    await marker.click()
    await expect(lines.nth(1)).to_have_class(re.compile(r"\bplaying\b"))
    assert abs(await _current_time(page) - 6.0) < 0.3

    # Keyboard: each line has a button (Enter plays from it), the scrubber is a slider.
    seek = lines.nth(0).locator("button.line-seek")
    await expect(seek).to_have_accessible_name("Play from 0:01")
    await seek.focus()
    await page.keyboard.press("Enter")
    await expect(lines.nth(0)).to_have_class(re.compile(r"\bplaying\b"))
    assert abs(await _current_time(page) - 1.0) < 0.3
    await page.locator("#playback-scrubber").focus()
    await page.keyboard.press("ArrowRight")
    assert abs(await _current_time(page) - 6.0) < 0.3
    await expect(lines.nth(1)).to_have_class(re.compile(r"\bplaying\b"))
    await screenshot(page, "dashboard-playback")


async def test_segments_play_in_order_on_one_clock(
    page: Page, web_api: WebApi, tables: CallTables, tmp_path: Path
) -> None:
    """A call recorded in two egresses (a reconnect): the player takes the ordered segments, a
    seek lands in the segment that holds the instant, and the first hands over to the second.

    Today's API stores one recording per call, so its answer is extended here, at the HTTP
    boundary, with a second segment 30 s later (the same real file, presigned by the API)."""
    call_id = await _ended_call_with_recording(tables, web_api, tmp_path)
    egress_start = await tables.conn.fetchval(
        "SELECT data->>'started_at' FROM call_events WHERE call_id = $1 AND kind = 'recording' "
        "AND data->>'status' = 'recording'",
        call_id,
    )
    start = datetime.fromisoformat(egress_start)
    late = (start + timedelta(seconds=35)).isoformat()
    await tables.add_event(
        call_id,
        "final_transcript",
        {"id": "line-late", "speaker": "customer", "text": "Sorry, I lost you. I'm back.",
         "started_at": late, "ended_at": late},
    )  # fmt: skip

    async def two_segments(route: Route) -> None:
        response = await route.fetch()
        link = await response.json()
        first = link["segments"][0]
        second = {**first, "index": 1,
                  "started_at": (start + timedelta(seconds=30)).isoformat()}  # fmt: skip
        await route.fulfill(response=response, json={**link, "segments": [first, second]})

    await page.route(f"**/api/calls/{call_id}/recording", two_segments)
    await sign_in(page, web_api.supervisor_token)
    await page.goto(f"/dashboard#/calls/{call_id}")
    audio = page.locator("#recording-audio")
    await expect(audio).to_have_js_property("readyState", 4, timeout=10_000)
    await expect(page.locator("#playback-segments")).to_have_text("2 segments, played in order.")
    lines = page.locator("#transcript li[data-at]")
    await expect(lines).to_have_count(4)

    # The late line is 5 s into the second segment.
    await lines.nth(3).locator("button.line-seek").click()
    await expect(audio).to_have_attribute("data-segment", "1")
    await expect(lines.nth(3)).to_have_class(re.compile(r"\bplaying\b"))
    assert abs(await _current_time(page) - 5.0) < 0.3
    # Back into the first segment, near its end: playing on hands over to the second.
    await lines.nth(2).locator("button.line-seek").click()
    await expect(audio).to_have_attribute("data-segment", "0")
    # (Back on segment 0 its metadata may still be loading: duration is NaN until then.)
    await audio.evaluate(
        "async a => { if (!Number.isFinite(a.duration)) await new Promise("
        "r => a.addEventListener('loadedmetadata', r, { once: true }));"
        " a.currentTime = a.duration - 0.3; return a.play(); }"
    )
    await expect(audio).to_have_attribute("data-segment", "1", timeout=10_000)
    await expect(page.locator("#playback-clock")).to_have_text(
        re.compile(r"^0:3\d$"), timeout=5_000
    )
