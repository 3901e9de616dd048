// The FUSE fd holder: listens on the path a juicefs client gets as JFS_SUPER_COMM and keeps the last
// /dev/fuse descriptor (and its FUSE InitIn setting) a client handed it, so that a new client process can
// take the same kernel connection over after the old one crashed or was upgraded. Protocol: protocol.ts.
import { EventEmitter } from 'node:events';
import { closeSync, fstatSync, openSync, rmSync } from 'node:fs';
import type { Logger } from 'pino';
import { UServer, USocket } from 'usocket';
import { closeAll, closeQuietly, readOneWithFds, readToEnd, send } from './exchange.js';
import { closeServer, endSocket } from './lifecycle.js';
import { classifyReply, CLOSE, INITIAL_SETTING, offerFds } from './protocol.js';

export interface HeldFd {
  fd: number;
  /** The client's FUSE InitIn (104 bytes from juicefs v1.3.1), sent with the fd to the next client. */
  setting: Buffer;
  /**
   * The FUSE connection the fd serves, as `connection()` named it when the fd was stored (a FUSE mount's device
   * number, `0:NN`: one per connection); undefined until it could be named.
   */
  connection?: string;
}

export interface HolderOptions {
  log: Logger;
  /** Start out holding this (e.g. pulled from a supervisor with pullFuseFd): the holder owns it from now on. */
  adopt?: HeldFd;
  /** How long one exchange may take before the holder drops the connection (default 10 s). */
  exchangeTimeoutMs?: number;
  /**
   * The FUSE connection mounted where the client mounts, or undefined when nothing is mounted there. A fd can
   * neither be read nor stat'ed for its connection, so this is how the holder tells a live fd from a dead one: a
   * held fd whose connection is no longer mounted there (unmounted, or replaced by another connection) is dropped,
   * never handed to a client (which would serve a connection nothing is mounted from, and exit 0, in a loop).
   * Absent: every held fd counts as live.
   */
  connection?: () => string | undefined;
}

interface HolderEvents {
  /** A client handed a new fd; the previous one (if any) has been closed. */
  stored: [HeldFd];
}

/** /dev/fuse is the misc character device 10:229. */
const FUSE_RDEV = (10 << 8) | 229;

export class FuseFdHolder extends EventEmitter<HolderEvents> {
  private current: HeldFd | undefined;
  private readonly dummy: number;
  private readonly server = new UServer();
  private readonly log: Logger;
  private readonly timeoutMs: number;
  private readonly connection: (() => string | undefined) | undefined;
  private closed = false;
  private lastAsk: number | undefined;

  private constructor(
    readonly socketPath: string,
    opts: HolderOptions,
  ) {
    super();
    this.log = opts.log;
    this.timeoutMs = opts.exchangeTimeoutMs ?? 10_000;
    this.connection = opts.connection;
    this.current = opts.adopt && { ...opts.adopt, connection: opts.adopt.connection ?? this.connection?.() };
    // juicefs always expects a first descriptor it throws away; /dev/null is what it sends itself (fd 0).
    this.dummy = openSync('/dev/null', 'r');
  }

  /** Listen on `socketPath` (a stale socket file there is replaced). */
  static async listen(socketPath: string, opts: HolderOptions): Promise<FuseFdHolder> {
    const holder = new FuseFdHolder(socketPath, opts);
    try {
      await new Promise<void>((resolve, reject) => {
        holder.server.once('error', reject);
        holder.server.once('listening', () => {
          holder.server.removeListener('error', reject);
          resolve();
        });
        holder.server.listen(socketPath);
      });
    } catch (err) {
      closeSync(holder.dummy);
      throw err;
    }
    holder.server.on('error', (err) => holder.log.error({ err }, 'fd holder socket error'));
    holder.server.on('connection', (sock) => void holder.serve(sock));
    holder.log.info({ socket: socketPath, held: holder.current?.fd }, 'fd holder listening');
    return holder;
  }

  held(): HeldFd | undefined {
    return this.current;
  }

  /** When a client last opened an exchange on the socket (ms since the epoch): a client that asks for the fd. */
  lastAskAt(): number | undefined {
    return this.lastAsk;
  }

  /**
   * The held fd if its connection is still mounted; otherwise it is released and undefined is returned. A fd stored
   * before its connection could be named takes the name of the connection mounted now.
   */
  live(): HeldFd | undefined {
    const h = this.current;
    if (!h || !this.connection) return h;
    const now = this.connection();
    if (now !== undefined && (h.connection === undefined || h.connection === now)) {
      h.connection = now;
      return h;
    }
    this.log.warn({ fd: h.fd, connection: h.connection, mountedNow: now ?? null }, 'held FUSE fd is dead: dropped');
    this.release();
    return undefined;
  }

  /**
   * Keep `h` (pulled from a client's own socket) unless a fd is held already: then `h` is closed. A client that never
   * hands its fd over (juicefs < 1.2.1 ignores JFS_SUPER_COMM) is held this way too.
   */
  adopt(h: HeldFd): boolean {
    if (this.closed || this.live()) {
      closeQuietly(h.fd);
      return false;
    }
    this.store(h);
    return true;
  }

  /** Close the held fd: once no client has it either, the kernel ends the FUSE connection. */
  release(): void {
    const h = this.current;
    this.current = undefined;
    if (h) {
      closeQuietly(h.fd);
      this.log.info({ fd: h.fd }, 'released the FUSE fd');
    }
  }

  /** Stop listening and remove the socket file; the held fd stays (release() closes it). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    closeServer(this.server);
    rmSync(this.socketPath, { force: true });
    closeQuietly(this.dummy);
  }

  private async serve(sock: USocket): Promise<void> {
    this.lastAsk = Date.now();
    // Never a dead connection: a client given one serves nothing, exits 0, and is restarted into it again.
    const offered = this.live();
    try {
      const answer = readToEnd(sock, this.timeoutMs);
      // Observed below, unless the send fails first: then the socket is closed and the answer is moot.
      answer.catch(() => undefined);
      await send(sock, { data: offered?.setting ?? INITIAL_SETTING, fds: offerFds(this.dummy, offered?.fd) });
      const { data, fds } = await answer;
      const reply = classifyReply(data, fds);
      if (reply.kind === 'store') this.store({ fd: reply.fd, setting: reply.setting });
      else {
        closeAll(reply.fds);
        this.log.debug({ why: reply.why, offered: offered !== undefined }, 'fd holder exchange: nothing to store');
      }
    } catch (err) {
      this.log.warn({ err }, 'fd holder exchange failed');
    } finally {
      endSocket(sock);
    }
  }

  private store(next: HeldFd): void {
    if (this.closed) {
      // Stopped in the middle of an exchange: keeping a descriptor nobody will release would leak it.
      closeQuietly(next.fd);
      return;
    }
    const rdev = fstatSync(next.fd).rdev;
    if (rdev !== FUSE_RDEV) this.log.warn({ fd: next.fd, rdev }, 'stored fd is not /dev/fuse');
    const old = this.current;
    this.current = { ...next, connection: this.connection?.() };
    if (old && old.fd !== next.fd) closeQuietly(old.fd);
    this.log.info(
      { fd: next.fd, settingBytes: next.setting.length, replaced: old?.fd, connection: this.current.connection },
      'stored a FUSE fd',
    );
    this.emit('stored', this.current);
  }
}

/**
 * Take a dup of the fd a running juicefs supervisor serves on its own socket (`/tmp/fuse_fd_comm.<pid>`,
 * its `_FUSE_FD_COMM`): how a holder that restarted gets the connection back without a client restart.
 * The supervisor closes its copy when it sends it (`handleFDRequest`), so the fd is sent straight back;
 * the supervisor keeps it (and, with JFS_SUPER_COMM set, also forwards it to that holder).
 * Undefined when the supervisor holds none (its mount process has it, or it is mid-restart).
 */
export async function pullFuseFd(socketPath: string, timeoutMs = 5_000): Promise<HeldFd | undefined> {
  const sock = new USocket();
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.connect(socketPath, () => resolve());
    });
    const { data, fds } = await readOneWithFds(sock, timeoutMs);
    const [dummy, fd, ...extra] = fds;
    closeAll([dummy, ...extra].filter((f) => f !== undefined));
    if (fd === undefined) {
      await send(sock, { data: CLOSE, fds: [] }).catch(() => undefined);
      return undefined;
    }
    const setting = Buffer.from(data);
    await send(sock, { data: setting, fds: [fd] });
    return { fd, setting };
  } finally {
    endSocket(sock);
  }
}
