// The JFS_SUPER_COMM protocol of the juicefs client (>= 1.2.1), as v1.3.1 speaks it (cmd/passfd.go and
// go-fuse's fuse/passfd.go of its module): pure rules, no sockets. The shell is holder.ts.
//
// One Unix stream connection per exchange; the holder (the listening side) speaks first:
//   holder → client: the stored setting, with SCM_RIGHTS fds [dummy] (nothing held) or [dummy, fuseFd];
//   client → holder: `CLOSE` + one dummy fd (it took the fd, or wanted nothing), or setting + its FUSE fd
//                    (a mount process has a new or pulled fd: the holder keeps it, replacing the old one).
// The client then closes the connection, so a message is everything read until end of stream.

/** What the holder sends while it holds nothing: juicefs's own initial `fuseSetting`. */
export const INITIAL_SETTING = Buffer.from('FUSE');

/** The client's answer when it took the fd (or needs nothing) and sends only a dummy descriptor. */
export const CLOSE = Buffer.from('CLOSE');

/** The descriptors the holder sends first: the dummy, then the held fd if any (juicefs drops the first). */
export function offerFds(dummy: number, held: number | undefined): number[] {
  return held === undefined ? [dummy] : [dummy, held];
}

export type Reply =
  | { kind: 'store'; fd: number; setting: Buffer }
  /** Every fd received must be closed: juicefs's CLOSE carries a dup of its fd 0. */
  | { kind: 'discard'; fds: number[]; why: string };

/**
 * The client's message read back: juicefs's own condition in `handleFDRequest` (not `CLOSE`, exactly one
 * fd) plus a non-empty setting, since the next client refuses a held fd whose setting is shorter than
 * its FUSE InitIn ("short setting").
 */
export function classifyReply(data: Buffer, fds: number[]): Reply {
  if (data.length === 0) return { kind: 'discard', fds, why: fds.length ? 'fds without a setting' : 'no answer' };
  if (data.equals(CLOSE)) return { kind: 'discard', fds, why: 'CLOSE' };
  if (fds.length !== 1) return { kind: 'discard', fds, why: `setting with ${fds.length} fds` };
  return { kind: 'store', fd: fds[0], setting: Buffer.from(data) };
}
