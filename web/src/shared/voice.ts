/**
 * Joining a LiveKit room for audio: the widget publishes the microphone and plays the agent;
 * the dashboard's monitor only listens. `livekit-client` is loaded on first use so that the
 * pages paint without it.
 */

import type { Participant, RemoteTrack, Room } from "livekit-client";

export interface VoiceCallbacks {
  onParticipantJoined?: (identity: string, isAgent: boolean) => void;
  onParticipantLeft?: (identity: string, isAgent: boolean) => void;
  onReconnecting?: () => void;
  onReconnected?: () => void;
  /** The room closed: `reason` is LiveKit's DisconnectReason name, when it gave one. */
  onDisconnected?: (reason: string | undefined) => void;
  /** The browser blocked autoplay: call `VoiceSession.startAudio()` from a click. */
  onAudioBlocked?: (blocked: boolean) => void;
}

export interface JoinOptions {
  url: string;
  token: string;
  publishMicrophone: boolean;
  /** Where the remote audio elements go (kept invisible by CSS). */
  audioContainer: HTMLElement;
  callbacks: VoiceCallbacks;
}

export interface VoiceSession {
  /** Remote participants already in the room when we joined. */
  present(): { identity: string; isAgent: boolean }[];
  setMicrophoneMuted(muted: boolean): Promise<void>;
  startAudio(): Promise<void>;
  disconnect(): Promise<void>;
}

/** Connect (fails within ~10 s if the server cannot be reached) and, if asked, publish the mic. */
export async function joinRoom(opts: JoinOptions): Promise<VoiceSession> {
  const lk = await import("livekit-client");
  const room: Room = new lk.Room({ adaptiveStream: true, dynacast: true, disconnectOnPageLeave: true });
  const cb = opts.callbacks;
  const isAgent = (p: Participant) => p.isAgent || p.identity.startsWith("agent");

  room
    .on(lk.RoomEvent.TrackSubscribed, (track: RemoteTrack) => {
      if (track.kind === lk.Track.Kind.Audio) {
        const el = track.attach();
        el.dataset.remoteAudio = "1";
        opts.audioContainer.appendChild(el);
      }
    })
    .on(lk.RoomEvent.TrackUnsubscribed, (track: RemoteTrack) => {
      for (const el of track.detach()) el.remove();
    })
    .on(lk.RoomEvent.ParticipantConnected, (p) => cb.onParticipantJoined?.(p.identity, isAgent(p)))
    .on(lk.RoomEvent.ParticipantDisconnected, (p) => cb.onParticipantLeft?.(p.identity, isAgent(p)))
    .on(lk.RoomEvent.Reconnecting, () => cb.onReconnecting?.())
    .on(lk.RoomEvent.Reconnected, () => cb.onReconnected?.())
    .on(lk.RoomEvent.AudioPlaybackStatusChanged, () => cb.onAudioBlocked?.(!room.canPlaybackAudio))
    .on(lk.RoomEvent.Disconnected, (reason) => {
      opts.audioContainer.replaceChildren();
      // A failed connect also emits Disconnected: that failure is reported by the rejection.
      if (connected) cb.onDisconnected?.(reason === undefined ? undefined : lk.DisconnectReason[reason]);
    });

  let connected = false;
  await room.connect(opts.url, opts.token, { autoSubscribe: true, maxRetries: 1, websocketTimeout: 10_000 });
  connected = true;
  if (opts.publishMicrophone) {
    try {
      await room.localParticipant.setMicrophoneEnabled(true, { echoCancellation: true, noiseSuppression: true });
    } catch (err) {
      await room.disconnect();
      throw new Error(`the microphone could not be used (${describeError(err)})`);
    }
  }
  if (!room.canPlaybackAudio) cb.onAudioBlocked?.(true);

  return {
    present: () => [...room.remoteParticipants.values()].map((p) => ({ identity: p.identity, isAgent: isAgent(p) })),
    setMicrophoneMuted: async (muted) => {
      await room.localParticipant.setMicrophoneEnabled(!muted);
    },
    startAudio: () => room.startAudio(),
    disconnect: () => room.disconnect(),
  };
}

/** A one-line, human-readable description of whatever was thrown. */
export function describeError(err: unknown): string {
  if (err instanceof DOMException && err.name === "NotAllowedError") return "permission was denied";
  if (err instanceof DOMException && err.name === "NotFoundError") return "no microphone was found";
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}
