"""The LiveKit Agents worker: explicit dispatch under AGENT_NAME, one `entrypoint` per call.

The entrypoint and prewarm are module-level functions because job processes import them by
name; each process reads its configuration from the same environment (`process_config()`).
"""

from __future__ import annotations

import asyncio
import json

from livekit import rtc
from livekit.agents import (
    AgentServer,
    AgentSession,
    AutoSubscribe,
    JobContext,
    JobProcess,
    room_io,
)
from livekit.protocol import agent as agent_proto
from temporalio.client import Client

from agent import metrics as turn_metrics
from agent.api_client import AgentApi
from agent.bridge import CallBridge
from agent.callbacks import ApiCallbacks
from agent.config import AgentConfig, process_config
from agent.dealership import Dealership
from agent.hold_music import HoldMusic
from agent.interim import InterimPoster
from agent.lines import FinalLines, send_orphans, signal_to_workflow
from agent.opening import fetch_opening
from agent.plugins import build_llm, build_stt, build_tts, build_turn_handling, load_vad
from agent.resilience import ProviderGuard, session_connect_options
from agent.resume import chat_context, conversation_so_far, wants_resume
from agent.sarah import Sarah
from agent.signals import ClientFactory, LoggedSignals, SignalQueue
from agent.spool import Spool
from agent.stt_confidence import FinalTranscripts
from agent.supervisor import SupervisorChannel
from core.livekit import AGENT_IDENTITY_PREFIX, room_admin_token
from core.log import get_logger
from core.models import (
    call_id_from_room,
    call_workflow_id,
    customer_identity,
    is_call_id,
    is_phone_room,
    room_name_for,
)
from core.settings import Settings
from core.telemetry import setup_tracing, trace_agent_turns
from core.temporal import connect_temporal

log = get_logger(__name__)


def temporal_connector(settings: Settings) -> ClientFactory:
    """How the bridge reaches Temporal: the shared client factory, with the payload codec."""

    async def connect() -> Client:
        return await connect_temporal(settings)

    return connect


def call_id_for_job(job: agent_proto.Job) -> str | None:
    """The call this job serves: `call_id` in the dispatch or room metadata (JSON), else the
    room name `call-<id>`. The room name wins when they disagree: it is where we are."""
    from_room = call_id_from_room(job.room.name)
    for raw in (job.metadata, job.room.metadata):
        try:
            data = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            continue
        value = data.get("call_id") if isinstance(data, dict) else None
        if isinstance(value, str) and is_call_id(value):
            if from_room is not None and value != from_room:
                log.warning("call_id_mismatch", call_id=from_room, metadata_call_id=value)
                return from_room
            return value
    return from_room


def serving_agent(room: rtc.Room) -> str | None:
    """The identity of another agent already in the room (None: this one serves the call)."""
    for p in room.remote_participants.values():
        if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
            return str(p.identity)
    return None


def prewarm(proc: JobProcess) -> None:
    """Once per process, before any call: load the models that run locally."""
    cfg = process_config()
    setup_tracing("callcenter-agent")  # off unless OTEL_EXPORTER_OTLP_ENDPOINT is set
    proc.userdata["vad"] = load_vad()
    if cfg.env.AGENT_TURN_DETECTION == "local":
        from livekit.local_inference import init_eot

        init_eot()


async def entrypoint(ctx: JobContext) -> None:
    cfg = process_config()
    console = ctx.is_fake_job()  # `python -m agent console`: no call, no workflow
    call_id = f"console{ctx.job.id[-12:].lower()}" if console else call_id_for_job(ctx.job)
    if call_id is None:
        log.error("job_without_call", room=ctx.job.room.name)
        ctx.shutdown(reason="room is not a call room")
        return
    ctx.log_context_fields = {"call_id": call_id}
    trace_agent_turns(call_id)
    phone = not console and is_phone_room(ctx.job.room.name)
    if phone and not await start_phone_call(cfg.settings, ctx.job.room.name, call_id):
        ctx.shutdown(reason="this phone call has ended")
        return

    finals = FinalTranscripts()
    queue: SignalQueue | LoggedSignals
    if console:
        queue = LoggedSignals(call_id)
    else:
        queue = SignalQueue(
            call_workflow_id(call_id),
            temporal_connector(cfg.settings),
            call_id=call_id,
            max_pending=cfg.env.AGENT_SIGNAL_QUEUE_MAX,
            coalesce_s=cfg.env.AGENT_TURN_COALESCE_S,
        )
        queue.start()
        resend = asyncio.create_task(_resend_spool(cfg, spool_dir=cfg.env.AGENT_SPOOL_DIR))
        resend.add_done_callback(lambda t: None if t.cancelled() else t.exception())
    api: AgentApi | None = None
    interim: InterimPoster | None = None
    final_lines: FinalLines | None = None  # written ahead, then stored through the API
    if not console:
        api = agent_api(cfg, call_id, ctx.job.room.name)
        interim = InterimPoster(api)
        final_lines = FinalLines(cfg.env.AGENT_SPOOL_DIR, api)
    bridge = CallBridge(
        call_id=call_id,
        customer_identity=customer_identity(call_id),
        signals=queue,
        interim=interim,
        finals=finals,
        away_after_s=cfg.silence_after_s,
        lines=final_lines,
        api=api,
    )
    dealership = Dealership(cfg.settings.database_url)

    spool = Spool(cfg.env.AGENT_SPOOL_DIR)

    async def finish(reason: str) -> None:
        delivered_all = await bridge.aclose(cfg.env.AGENT_FLUSH_TIMEOUT_S, spool)
        await dealership.aclose()
        log.info("call_finished", call_id=call_id, reason=reason, all_signals=delivered_all)

    ctx.add_shutdown_callback(finish)

    resume = None
    if not console and wants_resume(ctx.job.metadata):
        # A replacement for a lost agent: the conversation so far, from the workflow.
        try:
            lines = await conversation_so_far(await connect_temporal(cfg.settings), call_id)
            resume = chat_context(lines)
            log.info("call_resumed", call_id=call_id, lines=len(lines))
        except Exception as exc:  # noqa: BLE001 - no context beats no agent: greet afresh
            log.error("resume_context_unavailable", call_id=call_id, error=repr(exc))
    # A callback's call: why Sarah calls and what was said before (not for a replacement agent,
    # who picks up the conversation under way instead). Asked while the room is joined.
    opening_asked = (
        asyncio.create_task(fetch_opening(api)) if api is not None and resume is None else None
    )

    await ctx.connect(auto_subscribe=AutoSubscribe.AUDIO_ONLY)
    if phone:
        # The caller joined before us, named by LiveKit (a hash: hide_phone_number).
        caller = phone_caller(ctx.room)
        if caller:
            bridge.customer_identity = caller
    already = serving_agent(ctx.room)
    if already is not None:
        # A dispatch answered late after another one was: one Sarah per call.
        log.warning("call_already_served", call_id=call_id, agent=already)
        ctx.shutdown(reason="another agent already serves this call")
        if opening_asked is not None:
            opening_asked.cancel()
        return
    opening = await opening_asked if opening_asked is not None else None
    session = new_session(cfg, vad=ctx.proc.userdata["vad"])
    bridge.attach(session)
    bridge.on_metrics = turn_metrics.observe
    bridge.watch_room(ctx.room)
    ProviderGuard(session, bridge, call_id=call_id).attach()
    sarah = Sarah(
        call_id=call_id,
        dealership=dealership,
        signals=bridge,
        consent_policy=cfg.recording_consent,
        timezone=cfg.timezone,
        finals=finals,
        resume=resume,
        callbacks=ApiCallbacks(api) if api is not None else None,
        opening=opening,
    )
    SupervisorChannel(
        session,
        sarah,
        call_id=call_id,
        bridge=bridge,
        stt_=build_stt(cfg, ctx.proc.userdata["vad"]),
        hold=HoldMusic(ctx.room, session, call_id=call_id).attach(),
    ).attach(ctx.room)
    session.on("close", lambda ev: ctx.shutdown(reason=f"session closed: {ev.reason.value}"))

    # Before the greeting: the call is in progress from here (the workflow then records per
    # its consent policy, e.g. once the disclosure has been said).
    bridge.agent_joined(ctx.room.local_participant.identity)
    log.info("call_started", call_id=call_id, interim_to=interim.url if interim else None)
    await session.start(
        agent=sarah,
        room=ctx.room,
        room_options=room_io.RoomOptions(
            participant_identity=bridge.customer_identity,  # not a supervisor who joins
            text_input=False,  # every customer line is speech, so every line is transcribed
            # A dropped customer may come back (CUSTOMER_REJOIN_GRACE_S): the call's workflow
            # decides when the call is over and deletes the room, which ends this job.
            close_on_disconnect=False,
        ),
    )


def phone_caller(room: rtc.Room) -> str | None:
    """The identity of the phone (a SIP participant) in the room, if one is in."""
    for p in room.remote_participants.values():
        if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_SIP:
            return str(p.identity)
    return None


async def start_phone_call(settings: Settings, room: str, call_id: str) -> bool:
    """An inbound phone call's workflow, started by this job or by the caller's webhook,
    whichever comes first (workflows.client.start_inbound_phone_call). False when the call
    has already ended; a Temporal that cannot be reached now is left to the webhook."""
    from temporalio.exceptions import WorkflowAlreadyStartedError

    from core.models import CallConfig
    from workflows.client import start_inbound_phone_call

    try:
        client = await connect_temporal(settings)
        await start_inbound_phone_call(
            client, room, CallConfig.from_settings(settings),
            task_queue=settings.TEMPORAL_TASK_QUEUE, pinned_to=settings.new_calls_pinned_to,
        )  # fmt: skip
    except WorkflowAlreadyStartedError:
        log.warning("phone_call_already_ended", call_id=call_id)
        return False
    except Exception as exc:  # noqa: BLE001 - the caller's webhook starts it as well
        log.warning("phone_call_not_started", call_id=call_id, error=type(exc).__name__)
    return True


def agent_api(cfg: AgentConfig, call_id: str, room: str = "") -> AgentApi:
    """The API's internal endpoints for one call, with a roomAdmin token on its room (`room`:
    an inbound phone call's, named by LiveKit; else `call-<id>`)."""
    token = room_admin_token(
        cfg.settings.LIVEKIT_API_KEY.get_secret_value(),
        cfg.settings.LIVEKIT_API_SECRET.get_secret_value(),
        room=room or room_name_for(call_id),
        identity=f"{AGENT_IDENTITY_PREFIX}{cfg.agent_name}",
    )
    return AgentApi(cfg.api_url, token, call_id=call_id)


async def _resend_spool(cfg: AgentConfig, *, spool_dir: str) -> None:
    """What earlier jobs on this machine could not deliver, sent now (in the background): the
    final lines of a process that died (to the API, and to their workflow again), then the
    signals a job could not deliver before it ended. Temporal being down holds back neither
    the lines' storage nor the call: only the signals wait (and stay spooled)."""
    connect = _connect_once(cfg.settings)
    timeout_s = cfg.env.AGENT_FLUSH_TIMEOUT_S
    try:
        stored = await send_orphans(
            spool_dir,
            lambda call_id: agent_api(cfg, call_id),
            signal_to_workflow(connect, timeout_s=timeout_s),
            timeout_s=timeout_s,
        )
        if stored:
            log.info("spool_lines_sent", lines=stored)
    except Exception as exc:  # noqa: BLE001 - the files stay for the next job; the call goes on
        log.warning("spool_lines_not_sent", error=repr(exc))
    try:
        sent = await Spool(spool_dir).resend(await connect())
        if sent:
            log.info("spool_sent", count=sent)
    except Exception as exc:  # noqa: BLE001 - the spool stays for the next job; the call goes on
        log.warning("spool_not_sent", error=repr(exc))


def _connect_once(settings: Settings) -> ClientFactory:
    """A client factory that connects on first use and then hands out that client."""
    client: list[Client] = []

    async def connect() -> Client:
        if not client:
            client.append(await connect_temporal(settings))
        return client[0]

    return connect


def new_session(cfg: AgentConfig, *, vad: object) -> AgentSession:
    """The call's session, built in plain sight from the configured models."""
    return AgentSession(
        stt=build_stt(cfg, vad),  # type: ignore[arg-type]
        llm=build_llm(cfg),
        tts=build_tts(cfg),
        vad=vad,  # type: ignore[arg-type]
        turn_handling=build_turn_handling(cfg),
        user_away_timeout=cfg.silence_after_s,
        max_tool_steps=4,
        conn_options=session_connect_options(),  # errors never close it: ProviderGuard
    )


def build_server(cfg: AgentConfig) -> AgentServer:
    """The worker, registered for explicit dispatch under `AGENT_NAME`; once it runs, it sends
    what dead processes left in the spool (each job does so again as it starts)."""
    settings = cfg.settings
    server = AgentServer(
        setup_fnc=prewarm,
        ws_url=settings.LIVEKIT_URL,
        api_key=settings.LIVEKIT_API_KEY.get_secret_value(),
        api_secret=settings.LIVEKIT_API_SECRET.get_secret_value(),
        port=cfg.env.AGENT_HTTP_PORT,
        initialize_process_timeout=30.0,
        # a job's last step is flushing its signals; give it the time that takes
        shutdown_process_timeout=cfg.env.AGENT_FLUSH_TIMEOUT_S + 15.0,
        prometheus_port=cfg.env.AGENT_PROMETHEUS_PORT or None,
        # job processes record into files that the worker's /metrics collects
        prometheus_multiproc_dir=cfg.env.AGENT_PROMETHEUS_DIR
        if cfg.env.AGENT_PROMETHEUS_PORT
        else None,
    )
    server.rtc_session(entrypoint, agent_name=cfg.agent_name)
    started: set[asyncio.Task[None]] = set()

    def resend_at_start() -> None:
        # What a process that died left in the spool goes now, not at the first call's start.
        task = asyncio.get_running_loop().create_task(
            _resend_spool(cfg, spool_dir=cfg.env.AGENT_SPOOL_DIR), name="spool-at-start"
        )
        started.add(task)
        task.add_done_callback(started.discard)

    server.on("worker_started", resend_at_start)
    return server
