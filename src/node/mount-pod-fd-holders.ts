// The node service's FUSE fd holders, one per Mount Pod (ADR 0015): the Mount Pod's
// client (juicefs >= 1.2.1, `JFS_SUPER_COMM`) hands its /dev/fuse fd to the holder
// in the Mount Pod's folder (FD_HOLDER_ROOT/<mount id>, the pod's /tmp), and a
// client that starts in that folder again (the container restarted after a crash
// or an OOM kill) takes the same FUSE connection over: the mount point and every
// target bound from it stay valid, nothing is re-bound. Holders die with this
// process; recover() takes the fds back from the clients' own fd sockets
// (`fuse_fd_comm.<pid>`, in the same folder) when the node service starts again.
import type { V1Pod } from '@kubernetes/client-node';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { FD_HOLDER_ROOT } from '../contract/keys.js';
import { FuseFdHolder, pullFuseFd, type HeldFd } from '../fdpass/holder.js';
import { JUICEFS_FS_TYPE, mountAt } from '../juicefs/mounts.js';
import { judgeTakeover, runningClientOf, type ClientWatch } from './fd-takeover.js';
import type { NodeRepairCounters } from './node-metrics.js';
import { FD_HOLDER_SOCKET, fdDirOf, mountPointOf } from './mount-pod-plan.js';

/** juicefs's own fd socket: `/tmp/fuse_fd_comm.<supervisor pid>`. */
const CLIENT_SOCKET_PREFIX = 'fuse_fd_comm.';

/**
 * The FUSE connection of the JuiceFS mount at a Mount Pod's mount point (its device number), or undefined: how a
 * holder tells whether the fd it keeps still serves the mount its next client will find there.
 */
export function juicefsConnectionAt(mountPoint: string): string | undefined {
  const m = mountAt(mountPoint);
  return m?.fsType === JUICEFS_FS_TYPE ? m.device : undefined;
}

export class MountPodFdHolders {
  private readonly holders = new Map<string, Promise<FuseFdHolder>>();
  /** Per folder: the client container the held fd belongs to, and one replacing it (fd-takeover.ts). */
  private readonly watches = new Map<string, ClientWatch>();

  /** The holders that are listening, for counting without waiting on a start. */
  private readonly listening = new Map<string, FuseFdHolder>();

  constructor(
    private readonly log: Logger,
    /** The folders' parent: FD_HOLDER_ROOT, the same path on the host and in the node service's container. */
    private readonly root = FD_HOLDER_ROOT,
    private readonly counters: NodeRepairCounters = {},
  ) {}

  /** How many Mount Pod clients' fds are held now. */
  heldCount(): number {
    return [...this.listening.values()].filter((h) => h.held() !== undefined).length;
  }

  /** A Mount Pod's folder this service manages (its plan's fdDir); anything else is refused. */
  private check(fdDir: string): string {
    if (path.dirname(fdDir) !== this.root) throw new Error(`fd-holder folder ${fdDir} is not under ${this.root}`);
    return fdDir;
  }

  /**
   * A holder listening in the Mount Pod's folder (made first), unless there is one. Call it before the Mount Pod is
   * created, so that its client finds the holder when it starts. With JFS_SUPER_COMM juicefs does not make its mount
   * point (it leaves that to the holder's side, as the reference driver does): `mountPoint` is made here. The holder
   * keeps a fd only while its connection is mounted at `mountPoint` (juicefsConnectionAt).
   */
  async ensure(fdDir: string, mountPoint: string, adopt?: HeldFd): Promise<void> {
    // Never touched while mounted: a held connection with no client serving it (between a handover and the next
    // client) blocks every stat, and mkdirSync stats an existing path; the whole service would hang.
    if (!mountAt(mountPoint)) mkdirSync(mountPoint, { recursive: true });
    const dir = this.check(fdDir);
    if (this.holders.has(dir)) return void (await this.holders.get(dir));
    // Root only: whoever can dial the socket gets the FUSE connection of the volume.
    mkdirSync(this.root, { recursive: true, mode: 0o700 });
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const log = this.log.child({ fdDir: dir });
    const started = FuseFdHolder.listen(path.join(dir, FD_HOLDER_SOCKET), {
      log,
      adopt,
      connection: () => juicefsConnectionAt(mountPoint),
    });
    this.holders.set(dir, started);
    try {
      const holder = await started;
      this.listening.set(dir, holder);
      holder.on('stored', (h) => log.info({ fd: h.fd }, "holding the Mount Pod client's FUSE fd"));
    } catch (err) {
      this.holders.delete(dir);
      throw err;
    }
  }

  /** Whether the Mount Pod's client handed its FUSE fd over (a client < 1.2.1 never does). */
  async holds(fdDir: string): Promise<boolean> {
    return (await this.holders.get(fdDir))?.live() !== undefined;
  }

  /**
   * The check pass: closes every held fd whose connection is no longer mounted at its Mount Pod's mount point, and
   * pulls one from the client's own fd socket where nothing is held (a client < 1.2.1 never hands its fd over, but
   * its supervisor serves it on `/tmp/fuse_fd_comm.<pid>` as every juicefs >= 1.1 does): with it held, that client
   * too survives a whole-client crash and can be upgraded (ADR 0019).
   */
  async dropDeadAndPullMissing(): Promise<void> {
    for (const [dir, started] of [...this.holders.entries()]) {
      const holder = await started.catch(() => undefined);
      if (!holder) continue;
      const had = holder.held() !== undefined;
      if (holder.live()) continue;
      if (had) this.counters.fdReleased?.inc({ reason: 'dead' });
      const pulled = await this.pullFromClient(dir);
      if (pulled && holder.adopt(pulled)) this.log.info({ fdDir: dir }, "pulled the FUSE fd from the client's socket");
    }
  }

  /**
   * The check pass, for each Mount Pod whose fd is held: a client container that replaced the fd's own and has not
   * asked the holder for it within the grace period (juicefs < 1.2.1) gets the connection ended, so that it mounts
   * afresh rather than wait on a connection nobody serves (fd-takeover.ts).
   */
  async releaseUntaken(pods: V1Pod[], now = Date.now()): Promise<void> {
    const byDir = new Map<string, V1Pod>();
    for (const p of pods) {
      const dir = fdDirOf(p);
      // The pod in use wins over one on its way out in the same folder (a re-creation).
      if (dir && (!byDir.has(dir) || !p.metadata?.deletionTimestamp)) byDir.set(dir, p);
    }
    for (const [dir, started] of [...this.holders.entries()]) {
      const holder = await started.catch(() => undefined);
      if (!holder) continue;
      const current = runningClientOf(byDir.get(dir));
      if (!holder.held()) {
        if (current) this.watches.set(dir, { containerId: current.containerId });
        continue;
      }
      const judged = judgeTakeover(this.watches.get(dir), current, holder.lastAskAt(), now);
      if (judged.watch) this.watches.set(dir, judged.watch);
      if (judged.release) {
        this.log.warn(
          { fdDir: dir, container: current?.containerId },
          'the new client did not ask for the held FUSE fd (juicefs < 1.2.1): released, it mounts afresh',
        );
        holder.release();
        this.counters.fdReleased?.inc({ reason: 'untaken' });
      }
    }
  }

  /** A dup of the fd a client's supervisor in `dir` serves on its own socket, if any. */
  private async pullFromClient(dir: string): Promise<HeldFd | undefined> {
    let files: string[];
    try {
      files = readdirSync(dir).filter((f) => f.startsWith(CLIENT_SOCKET_PREFIX));
    } catch {
      return undefined;
    }
    for (const file of files) {
      const pulled = await pullFuseFd(path.join(dir, file)).catch((err: unknown) => {
        this.log.debug({ socket: path.join(dir, file), err: (err as Error).message }, 'could not pull the FUSE fd');
        return undefined;
      });
      if (pulled) return pulled;
    }
    return undefined;
  }

  /**
   * Drops the held fd, the holder keeps listening: the Mount Pod is going (its preStop unmounts the mount point), so
   * the next client in this folder must mount afresh rather than take a connection nothing is mounted from.
   */
  async release(fdDir: string): Promise<void> {
    const holder = await this.holders.get(fdDir);
    if (holder?.held()) this.counters.fdReleased?.inc({ reason: 'ended' });
    holder?.release();
  }

  /** The Mount Pod is gone for good: the holder stops, its fd is closed, the folder is removed. */
  async remove(fdDir: string): Promise<void> {
    const dir = this.check(fdDir);
    const holder = await this.holders.get(dir)?.catch(() => undefined);
    this.holders.delete(dir);
    this.listening.delete(dir);
    this.watches.delete(dir);
    holder?.release();
    await holder?.close();
    rmSync(dir, { recursive: true, force: true });
    this.log.info({ fdDir: dir }, 'fd holder removed');
  }

  /**
   * After a start: every folder of a live Mount Pod of this node gets its holder again, with the fd pulled from the
   * client's own fd socket (the client keeps its copy); folders of no live Mount Pod are removed.
   */
  async recover(pods: V1Pod[]): Promise<void> {
    const live = new Map<string, string>();
    for (const p of pods.filter((p) => !p.metadata?.deletionTimestamp)) {
      const dir = fdDirOf(p);
      const mountPoint = mountPointOf(p);
      if (dir && mountPoint) live.set(dir, mountPoint);
    }
    let entries: string[];
    try {
      entries = readdirSync(this.root);
    } catch {
      return; // no folder yet: nothing was held on this node
    }
    for (const name of entries) {
      const dir = path.join(this.root, name);
      if (!live.has(dir)) {
        rmSync(dir, { recursive: true, force: true });
        this.log.info({ fdDir: dir }, 'fd-holder folder of no Mount Pod removed');
        continue;
      }
      const pulled = await this.pullFromClient(dir);
      await this.ensure(dir, live.get(dir)!, pulled);
      this.log.info({ fdDir: dir, recovered: pulled !== undefined }, 'fd holder recovered after a restart');
    }
    // A live Mount Pod whose folder is missing still gets a holder (the kubelet makes the folder otherwise).
    for (const [dir, mountPoint] of live) {
      if (this.holders.has(dir)) continue;
      await this.ensure(dir, mountPoint).catch((err: unknown) =>
        this.log.warn({ fdDir: dir, err: (err as Error).message }, 'no fd holder for a Mount Pod'),
      );
    }
  }

  /** Stops listening (this process ends): the held fds close with it, the clients keep theirs; folders stay. */
  async close(): Promise<void> {
    const all = [...this.holders.values()];
    this.holders.clear();
    this.listening.clear();
    for (const started of all) await (await started.catch(() => undefined))?.close();
  }
}
