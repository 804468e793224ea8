"""The agent's models, configured in one place: silero VAD, Deepgram STT, OpenAI LLM, Cartesia TTS,
and a turn detector that runs on this machine.

Each of STT, LLM and TTS sits behind livekit-agents' `FallbackAdapter`, with the optional
secondary from settings (`AGENT_STT_FALLBACK`, `AGENT_LLM_FALLBACK_MODEL`,
`AGENT_TTS_FALLBACK`): a provider that fails moves the call to the next one; what still fails
is the `ProviderGuard`'s (agent/resilience.py). Constructing these touches no network; the
first request happens when a call starts.
"""

from __future__ import annotations

from livekit.agents import NOT_GIVEN, TurnHandlingOptions, inference, llm, stt, tts, vad
from livekit.plugins import cartesia, deepgram, openai, silero

from agent.config import AgentConfig

# openai's client insists on a key even for local OpenAI-compatible servers, which ignore it.
_LOCAL_SERVER_KEY = "not-needed-by-a-local-server"


def load_vad() -> vad.VAD:
    """Silero VAD from the model file inside the plugin's wheel. Blocking: call it in prewarm."""
    return silero.VAD.load(min_silence_duration=0.45, activation_threshold=0.5)


def build_stt(cfg: AgentConfig, vad_: vad.VAD | None = None) -> stt.FallbackAdapter:
    """Deepgram (streaming), then OpenAI's transcription (cut into utterances by the VAD)."""
    chain: list[stt.STT] = [
        deepgram.STT(
            model=cfg.env.AGENT_STT_MODEL,
            language=cfg.env.AGENT_LANGUAGE,
            interim_results=True,  # interim lines feed the supervisors' live view
            smart_format=True,
            punctuate=True,
            api_key=cfg.secret("DEEPGRAM_API_KEY"),
        )
    ]
    if cfg.env.AGENT_STT_FALLBACK == "openai":
        chain.append(
            openai.STT(
                model=cfg.env.AGENT_STT_FALLBACK_MODEL,
                language=cfg.env.AGENT_LANGUAGE.split("-")[0],
                api_key=cfg.secret("OPENAI_API_KEY") or _LOCAL_SERVER_KEY,
                base_url=cfg.settings.OPENAI_BASE_URL or NOT_GIVEN,
            )
        )
    return stt.FallbackAdapter(chain, vad=vad_)


def build_llm(cfg: AgentConfig) -> llm.FallbackAdapter:
    """The configured OpenAI-compatible model, then the fallback model if one is set."""
    base_url = cfg.settings.OPENAI_BASE_URL
    key = cfg.secret("OPENAI_API_KEY") or _LOCAL_SERVER_KEY
    chain: list[llm.LLM] = [_openai_llm(cfg.settings.OPENAI_MODEL, key, base_url)]
    if cfg.env.AGENT_LLM_FALLBACK_MODEL:
        fallback_url = cfg.env.AGENT_LLM_FALLBACK_BASE_URL or base_url
        chain.append(_openai_llm(cfg.env.AGENT_LLM_FALLBACK_MODEL, key, fallback_url))
    return llm.FallbackAdapter(chain)


def _openai_llm(model: str, key: str, base_url: str | None) -> openai.LLM:
    return openai.LLM(
        model=model,
        api_key=key,
        base_url=base_url if base_url else NOT_GIVEN,
        temperature=0.4,
        parallel_tool_calls=False,  # tools change state (bookings, alerts): one at a time
    )


def build_tts(cfg: AgentConfig) -> tts.FallbackAdapter:
    """Cartesia, then OpenAI's speech if configured."""
    chain: list[tts.TTS] = [
        cartesia.TTS(
            model=cfg.env.AGENT_TTS_MODEL,
            voice=cfg.settings.CARTESIA_VOICE,
            language=cfg.env.AGENT_LANGUAGE.split("-")[0],
            api_key=cfg.secret("CARTESIA_API_KEY"),
        )
    ]
    if cfg.env.AGENT_TTS_FALLBACK == "openai":
        chain.append(
            openai.TTS(
                model=cfg.env.AGENT_TTS_FALLBACK_MODEL,
                voice=cfg.env.AGENT_TTS_FALLBACK_VOICE,
                api_key=cfg.secret("OPENAI_API_KEY") or _LOCAL_SERVER_KEY,
                base_url=cfg.settings.OPENAI_BASE_URL or NOT_GIVEN,
            )
        )
    return tts.FallbackAdapter(chain)


def build_turn_handling(cfg: AgentConfig) -> TurnHandlingOptions:
    """Turn detection that runs locally.

    `local` (default) is LiveKit's `turn-detector-v1-mini` audio model, whose weights ship inside
    the `livekit-local-inference` wheel (nothing downloaded); the session's own default would
    pick the cloud `v1` model in dev mode, so the version is pinned here. `vad` ends a turn on
    silence alone; `stt` on the STT's end-of-speech.

    Endpointing is left to the detector's own defaults (0.3/2.5 s for the streaming detector).
    The interruption mode is pinned to `vad`: left unset, `dev` would pick the cloud adaptive
    detector and `start` would not, so the two would behave differently.
    """
    mode = cfg.env.AGENT_TURN_DETECTION
    turn_detection: inference.TurnDetector | str
    if mode == "local":
        turn_detection = inference.TurnDetector(version="v1-mini")
    else:
        turn_detection = mode
    return TurnHandlingOptions(
        turn_detection=turn_detection,  # type: ignore[typeddict-item]
        interruption={"enabled": True, "mode": "vad", "min_duration": 0.5},
    )
