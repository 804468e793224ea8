"""Outbound campaigns (issue 25).

- `POST /api/campaigns` (supervisor, admin): a JSON body, or the numbers as a CSV upload
  (`text/csv` with the other fields as query parameters, or `multipart/form-data` with a
  `numbers` file and the fields as form fields). 422 names the field (`numbers[i]` in the
  message for a bad number); numbers on the do-not-call list are kept and skipped at dial time
  (`on_do_not_call` counts them).
- `GET /api/campaigns`, `GET /api/campaigns/{id}` with progress (dialled, answered, busy,
  no_answer, failed, skipped, remaining).
- `POST /api/campaigns/{id}/pause|resume|cancel`: 409 once it has ended.

Numbers are never logged or answered: only counts.
"""

from __future__ import annotations

from typing import Any

from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse

import core.campaigns as cp
from api.auth import ACT_ON_CALLS, READ_CALLS, Principal, require
from api.docs import endpoint
from api.domain import campaigns as domain
from api.errors import ValidationFailed
from api.schemas import CampaignCreateRequest, CampaignList, CampaignView
from api.validation import parse_body
from core.log import get_logger

log = get_logger("api.campaigns")
bp = Blueprint("campaigns")
_FIELDS = ("name", "window", "timezone", "max_concurrent", "start_at", "reason")


def _check_id(campaign_id: str) -> None:
    if not cp.CAMPAIGN_ID_RE.match(campaign_id):
        raise ValidationFailed("id: not a campaign id", field="id")


def _from_csv(request: Request) -> CampaignCreateRequest:
    """`text/csv` (fields in the query) or `multipart/form-data` (a `numbers` file)."""
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        upload = request.files.get("numbers") if request.files else None
        if upload is None:
            raise ValidationFailed("numbers: a CSV file is required", field="numbers")
        form: Any = request.form or {}
        raw, fields = upload.body, {k: form.get(k) for k in form}
    else:
        raw, fields = request.body or b"", {k: v[0] for k, v in request.args.items()}
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationFailed("numbers: the CSV is not UTF-8", field="numbers") from None
    data: dict[str, Any] = {**fields, "numbers": domain.numbers_from_csv(text)}
    if "max_concurrent" in data:
        try:
            data["max_concurrent"] = int(data["max_concurrent"])
        except ValueError:
            raise ValidationFailed("max_concurrent: must be a whole number",
                                   field="max_concurrent") from None  # fmt: skip
    unknown = set(data) - {"numbers", *_FIELDS}
    if unknown:
        field = sorted(unknown)[0]
        raise ValidationFailed(f"{field}: unknown field", field=field)
    return parse_query_dict(data)


def parse_query_dict(data: dict[str, Any]) -> CampaignCreateRequest:
    from pydantic import ValidationError

    from api.validation import _raise_from

    try:
        return CampaignCreateRequest.model_validate(data)
    except ValidationError as exc:
        _raise_from(exc)
        raise


@bp.post("/api/campaigns")
@endpoint("Start a campaign: dial a list a few at a time inside the calling window",
          tag="campaigns", ok=201, body=CampaignCreateRequest, response=CampaignView,
          errors=(422, 503), secured=True)  # fmt: skip
@require(ACT_ON_CALLS)
async def create_campaign(request: Request) -> HTTPResponse:
    ctype = request.headers.get("content-type", "")
    csv_upload = ctype.startswith(("text/csv", "multipart/form-data"))
    body = _from_csv(request) if csv_upload else parse_body(request, CampaignCreateRequest)
    res = request.app.ctx.res
    principal: Principal = request.ctx.principal
    view = await domain.create(res.temporal, res.db, request.app.ctx.settings, body,
                               principal.id)  # fmt: skip
    log.info("campaign_created", campaign_id=view["id"], numbers=len(body.numbers),
             by=principal.id)  # fmt: skip
    return json(view, status=201)


@bp.get("/api/campaigns")
@endpoint("Campaigns, newest first", tag="campaigns", response=CampaignList, secured=True)
@require(READ_CALLS)
async def list_campaigns(request: Request) -> HTTPResponse:
    return json({"campaigns": await domain.rows(request.app.ctx.res.db)})


@bp.get("/api/campaigns/<campaign_id:str>")
@endpoint("A campaign with its progress", tag="campaigns", response=CampaignView,
          errors=(404, 422), secured=True)  # fmt: skip
@require(READ_CALLS)
async def get_campaign(request: Request, campaign_id: str) -> HTTPResponse:
    _check_id(campaign_id)
    res = request.app.ctx.res
    return json(await domain.view(res.temporal, res.db, campaign_id))


async def _signal(request: Request, campaign_id: str, what: str) -> HTTPResponse:
    _check_id(campaign_id)
    res = request.app.ctx.res
    view = await domain.signal(res.temporal, res.db, campaign_id, what)
    log.info("campaign_" + what, campaign_id=campaign_id, by=request.ctx.principal.id)
    return json(view)


@bp.post("/api/campaigns/<campaign_id:str>/pause")
@endpoint("Pause a campaign (calls ringing go on; no new one starts)", tag="campaigns",
          response=CampaignView, errors=(404, 409, 422), secured=True)  # fmt: skip
@require(ACT_ON_CALLS)
async def pause_campaign(request: Request, campaign_id: str) -> HTTPResponse:
    return await _signal(request, campaign_id, cp.SIGNAL_PAUSE)


@bp.post("/api/campaigns/<campaign_id:str>/resume")
@endpoint("Resume a paused campaign", tag="campaigns", response=CampaignView,
          errors=(404, 409, 422), secured=True)  # fmt: skip
@require(ACT_ON_CALLS)
async def resume_campaign(request: Request, campaign_id: str) -> HTTPResponse:
    return await _signal(request, campaign_id, cp.SIGNAL_RESUME)


@bp.post("/api/campaigns/<campaign_id:str>/cancel")
@endpoint("Cancel a campaign (no number is dialled after it)", tag="campaigns",
          response=CampaignView, errors=(404, 409, 422), secured=True)  # fmt: skip
@require(ACT_ON_CALLS)
async def cancel_campaign(request: Request, campaign_id: str) -> HTTPResponse:
    return await _signal(request, campaign_id, cp.SIGNAL_CANCEL)
