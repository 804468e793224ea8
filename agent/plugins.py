"""The agent's models, configured in one place: silero VAD, Deepgram STT, OpenAI LLM, Cartesia TTS,
and a turn detector that runs on this machine.

Constructing these touches no network; the first request happens when a call starts.
"""

from __future__ import annotations

from livekit.agents import NOT_GIVEN, TurnHandlingOptions, inference, vad
from livekit.plugins import cartesia, deepgram, openai, silero

from agent.config import AgentConfig

# openai's client insists on a key even for local OpenAI-compatible servers, which ignore it.
_LOCAL_SERVER_KEY = "not-needed-by-a-local-server"


def load_vad() -> vad.VAD:
    """Silero VAD from the model file inside the plugin's wheel. Blocking: call it in prewarm."""
    return silero.VAD.load(min_silence_duration=0.45, activation_threshold=0.5)


def build_stt(cfg: AgentConfig) -> deepgram.STT:
    return deepgram.STT(
        model=cfg.env.AGENT_STT_MODEL,
        language=cfg.env.AGENT_LANGUAGE,
        interim_results=True,  # interim lines feed the supervisors' live view
        smart_format=True,
        punctuate=True,
        api_key=cfg.secret("DEEPGRAM_API_KEY"),
    )


def build_llm(cfg: AgentConfig) -> openai.LLM:
    base_url = cfg.settings.OPENAI_BASE_URL
    return openai.LLM(
        model=cfg.settings.OPENAI_MODEL,
        api_key=cfg.secret("OPENAI_API_KEY") or _LOCAL_SERVER_KEY,
        base_url=base_url if base_url else NOT_GIVEN,
        temperature=0.4,
        parallel_tool_calls=False,  # tools change state (bookings, alerts): one at a time
    )


def build_tts(cfg: AgentConfig) -> cartesia.TTS:
    return cartesia.TTS(
        model=cfg.env.AGENT_TTS_MODEL,
        voice=cfg.settings.CARTESIA_VOICE,
        language=cfg.env.AGENT_LANGUAGE.split("-")[0],
        api_key=cfg.secret("CARTESIA_API_KEY"),
    )


def build_turn_handling(cfg: AgentConfig) -> TurnHandlingOptions:
    """Turn detection that runs locally.

    `local` (default) is LiveKit's `turn-detector-v1-mini` audio model, whose weights ship inside
    the `livekit-local-inference` wheel (nothing downloaded); the session's own default would
    pick the cloud `v1` model in dev mode, so the version is pinned here. `vad` ends a turn on
    silence alone; `stt` on the STT's end-of-speech.
    """
    mode = cfg.env.AGENT_TURN_DETECTION
    turn_detection: inference.TurnDetector | str
    if mode == "local":
        turn_detection = inference.TurnDetector(version="v1-mini")
    else:
        turn_detection = mode
    return TurnHandlingOptions(
        turn_detection=turn_detection,  # type: ignore[typeddict-item]
        endpointing={"min_delay": 0.5, "max_delay": 3.0},
        interruption={"enabled": True, "min_duration": 0.5},
    )
