// `jfs-sidecar fd-holder`: the holder container of sidecar mode (issue 13, ADR 0016). `run` keeps one FuseFdHolder
// per client container on the pod's shared memory volume (`<dir>/<container>/fuse.sock`, that client's
// JFS_SUPER_COMM), so a restarted client container (crash, OOM kill, in-place image change) takes the same FUSE
// connection over and the apps' mounts stay valid. `expect-handover` arms the next SIGTERM of those containers as an
// upgrade (exec'd into this container by the upgrader): their entrypoint script then hands the client over instead
// of stopping it (CLIENT_ENTRYPOINT_SCRIPT, src/mount/containers.ts).
import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { FD_HOLDER_HANDOVER_FILE, FD_HOLDER_SOCKET_FILE } from '../contract/keys.js';
import { FuseFdHolder } from '../fdpass/holder.js';

export interface FdHolderRun {
  close(): Promise<void>;
  holders: Map<string, FuseFdHolder>;
}

/** Listen for each client container; each gets its own folder (the client container runs as root, this need not). */
export async function runFdHolder(dir: string, names: string[], log: Logger): Promise<FdHolderRun> {
  const holders = new Map<string, FuseFdHolder>();
  for (const name of names) {
    const sub = path.join(dir, name);
    mkdirSync(sub, { recursive: true });
    // A marker left from before this holder (re)started arms nothing: only an upgrader's fresh one does.
    rmSync(path.join(sub, FD_HOLDER_HANDOVER_FILE), { force: true });
    holders.set(name, await FuseFdHolder.listen(path.join(sub, FD_HOLDER_SOCKET_FILE), { log: log.child({ name }) }));
  }
  return {
    holders,
    // Stopped with the pod (a native sidecar stops after the containers after it): the clients are gone, so
    // releasing the fds ends the connections and nothing is left holding them.
    async close() {
      for (const h of holders.values()) {
        await h.close();
        h.release();
      }
    },
  };
}

/**
 * Arm the handover of the named client containers (default: every folder on the volume) for the next `ttlSeconds`:
 * the marker holds its deadline (epoch seconds), written atomically; the script consumes it on SIGTERM.
 */
export function expectHandover(dir: string, names: string[], ttlSeconds: number, now = Date.now()): string[] {
  const targets = names.length
    ? names
    : readdirSync(dir, { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => e.name);
  if (!targets.length) throw new Error(`no client container folder in ${dir}`);
  const deadline = Math.floor(now / 1000) + ttlSeconds;
  for (const name of targets) {
    const marker = path.join(dir, name, FD_HOLDER_HANDOVER_FILE);
    writeFileSync(`${marker}.tmp`, `${deadline}\n`, { mode: 0o644 });
    renameSync(`${marker}.tmp`, marker);
  }
  return targets;
}
