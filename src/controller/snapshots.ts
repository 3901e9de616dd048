// VolumeSnapshots as the reference driver (v0.32) lays them out: a snapshot
// of a PV is a `juicefs clone -p` of its directory (metadata only, no data
// copied) at `.snapshots/<source volume id>/<snapshot name>` in the same
// JuiceFS volume, its handle `<snapshot name>|<source volume id>`; a restore
// clones it back into the new PV's directory. Snapshots the reference took
// are found by the same rule, so they delete and restore here too. The pure
// part: handles, paths, pages.
import { createHash } from 'node:crypto';
import { hasControlCharacters } from '../contract/names.js';
import type { SnapshotRecord } from './registry.js';

/** The reference's folder of snapshot copies, at the volume root. */
export const SNAPSHOT_DATA_DIR = '.snapshots';

export function snapshotHandle(name: string, sourceVolumeId: string): string {
  return `${name}|${sourceVolumeId}`;
}

/** A handle's parts, or undefined for one that is not `<name>|<source volume id>`. */
export function parseSnapshotHandle(id: string): { name: string; sourceVolumeId: string } | undefined {
  const at = id.indexOf('|');
  if (at <= 0 || at === id.length - 1) return undefined;
  return { name: id.slice(0, at), sourceVolumeId: id.slice(at + 1) };
}

/** An id as one path segment: itself when it is a plain name (as the reference uses it), else its hash. */
function segment(id: string): string {
  const plain = id !== '.' && id !== '..' && !id.includes('/') && !hasControlCharacters(id) && id.length <= 200;
  return plain ? id : `sha256-${createHash('sha256').update(id).digest('hex')}`;
}

/** Where a snapshot's copy lies, relative to the volume root. */
export function snapshotDir(name: string, sourceVolumeId: string): string {
  return `${SNAPSHOT_DATA_DIR}/${segment(sourceVolumeId)}/${segment(name)}`;
}

export class PageError extends Error {
  override name = 'PageError';
}

/**
 * One page of a list in a stable order (by creation, then name): `startingToken` is the index to start at, as
 * the previous page's `nextToken` gave it. Throws PageError for a token that is no index of this list.
 */
export function pageOf<T>(
  items: readonly T[],
  maxEntries: number,
  startingToken: string,
): { entries: T[]; nextToken: string } {
  let start = 0;
  if (startingToken) {
    if (!/^\d+$/.test(startingToken)) throw new PageError(`starting_token "${startingToken}" is not one of ours`);
    start = Number(startingToken);
    if (start > items.length)
      throw new PageError(`starting_token ${start} is past the end of the list (${items.length})`);
  }
  const end = maxEntries > 0 ? Math.min(items.length, start + maxEntries) : items.length;
  return { entries: items.slice(start, end), nextToken: end < items.length ? String(end) : '' };
}

/** Snapshots in the order pages are cut from: oldest first, ties by name. */
export function snapshotOrder(a: SnapshotRecord, b: SnapshotRecord): number {
  return a.createdAt.localeCompare(b.createdAt) || a.name.localeCompare(b.name);
}

/** CSI's creation_time (google.protobuf.Timestamp) of an ISO time. */
export function timestampOf(iso: string): { seconds: string; nanos: number } {
  const ms = Date.parse(iso) || 0;
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}
