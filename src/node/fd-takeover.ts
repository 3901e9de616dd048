// Whether a Mount Pod's new client container will take the FUSE fd the node service holds (pure; ADR 0019).
// A juicefs >= 1.2.1 supervisor asks the holder on JFS_SUPER_COMM as it starts (before it serves its own fd
// socket) and takes the connection over. An older one (1.2.0: the container restarted on its image's binary, a
// re-created Mount Pod of an old image) never asks; it meets the held connection nobody serves, where every stat of
// the mount point blocks, and with the fd held it can neither use that connection nor have the kernel end it. So a
// held fd that the replacing container has not asked for within a grace period is released: the kernel ends the
// connection, the client mounts afresh, and the check pass re-binds the targets (the way of a client with no holder).
import type { V1Pod } from '@kubernetes/client-node';
import { SIDECAR_NAME } from '../contract/keys.js';

/** How long a new client container has to ask for the held fd; a >= 1.2.1 supervisor asks once its metadata loads. */
export const TAKEOVER_GRACE_MS = 10_000;

/** The client container running in a Mount Pod now. */
export interface RunningClient {
  containerId: string;
  /** When it started (the kubelet's `startedAt`, whole seconds), ms since the epoch. */
  startedAt?: number;
}

/** What the node service remembers of a held fd's client. */
export interface ClientWatch {
  /** The container the held fd is the connection of (the one that handed it over, or that the check first saw). */
  containerId: string;
  /** A container that replaced it and has not asked for the fd yet, with when the check first saw it. */
  replacement?: { containerId: string; seenAt: number };
}

export interface TakeoverJudgement {
  watch: ClientWatch | undefined;
  /** Release the held fd: the replacing client did not ask for it within the grace period. */
  release: boolean;
}

/** The running client container of a Mount Pod, if any. */
export function runningClientOf(pod: V1Pod | undefined): RunningClient | undefined {
  const status = pod?.status?.containerStatuses?.find((c) => c.name === SIDECAR_NAME);
  const running = status?.state?.running;
  if (!status?.containerID || !running) return undefined;
  const startedAt = running.startedAt ? new Date(running.startedAt).getTime() : undefined;
  return { containerId: status.containerID, ...(startedAt !== undefined && !Number.isNaN(startedAt) && { startedAt }) };
}

/**
 * One check of a held fd's client. `lastAskAt` is when a client last opened an exchange on the holder's socket.
 * A client that asked at or after its container's start took the fd over (or was offered it): it owns the fd now.
 */
export function judgeTakeover(
  watch: ClientWatch | undefined,
  current: RunningClient | undefined,
  lastAskAt: number | undefined,
  now: number,
  graceMs = TAKEOVER_GRACE_MS,
): TakeoverJudgement {
  // No client running (between a crash and its restart, a pod being created): nothing to judge yet.
  if (!current) return { watch, release: false };
  if (!watch || watch.containerId === current.containerId)
    return { watch: { containerId: current.containerId }, release: false };
  // The kubelet's startedAt has whole seconds: an ask in the second the container started counts.
  const startSecond = current.startedAt !== undefined ? Math.floor(current.startedAt / 1000) * 1000 : undefined;
  const asked = lastAskAt !== undefined && startSecond !== undefined && lastAskAt >= startSecond;
  if (asked) return { watch: { containerId: current.containerId }, release: false };
  const replacement =
    watch.replacement?.containerId === current.containerId
      ? watch.replacement
      : { containerId: current.containerId, seenAt: now };
  if (now - replacement.seenAt >= graceMs) return { watch: { containerId: current.containerId }, release: true };
  return { watch: { containerId: watch.containerId, replacement }, release: false };
}
