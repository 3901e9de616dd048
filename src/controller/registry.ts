// The controller's records of the volumes it provisioned and the snapshots it
// took, kept inside the JuiceFS volume itself (/.jfs-sidecar/volumes/,
// /.jfs-sidecar/snapshots/), so that DeleteVolume and DeleteSnapshot, which get
// only an id, know the directory (a pathPattern can name any) and whether
// another PV shares it, with no state outside the volume.
import { createHash } from 'node:crypto';
// Asynchronous I/O: the record lives on the FUSE mount, and a synchronous call there would hold the controller's
// event loop (every other CreateVolume in flight) for a metadata round trip.
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

export const REGISTRY_DIR = '.jfs-sidecar/volumes';
export const SNAPSHOT_REGISTRY_DIR = '.jfs-sidecar/snapshots';

export interface VolumeRecord {
  id: string;
  /** Directory relative to the volume root. */
  subdir: string;
  /** Quota in bytes; 0 when the request named no capacity. */
  capacityBytes: number;
  createdAt: string;
  /** The snapshot handle it was restored from, if any (a retry naming another source is a different volume). */
  source?: string;
}

export interface SnapshotRecord {
  /** The CSI name (csi-snapshotter's `snapshot-<uid>`). */
  name: string;
  sourceVolumeId: string;
  /** Directory of the snapshot's copy, relative to the volume root. */
  dir: string;
  /** The source volume's capacity when it was taken (a restore must ask at least this much). */
  sizeBytes: number;
  createdAt: string;
  /** False while the copy is being made (a crash leaves a record the retry completes). */
  ready: boolean;
}

function fileOf(root: string, dir: string, id: string): string {
  return path.join(root, dir, `${createHash('sha256').update(id).digest('hex')}.json`);
}

const missing = (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOENT';

async function read<T>(root: string, dir: string, id: string): Promise<T | undefined> {
  let text: string;
  try {
    text = await readFile(fileOf(root, dir, id), 'utf8');
  } catch (err) {
    if (missing(err)) return undefined;
    throw err;
  }
  return JSON.parse(text) as T;
}

/** Written to a temporary name and renamed, so a crash never leaves half a record. */
async function write(root: string, dir: string, id: string, record: object): Promise<void> {
  const f = fileOf(root, dir, id);
  await mkdir(path.dirname(f), { recursive: true });
  const tmp = `${f}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(record));
  await rename(tmp, f);
}

async function list<T>(root: string, dir: string): Promise<T[]> {
  let names: string[];
  try {
    names = await readdir(path.join(root, dir));
  } catch (err) {
    if (missing(err)) return [];
    throw err;
  }
  return Promise.all(
    names
      .filter((f) => f.endsWith('.json'))
      .map(async (f) => JSON.parse(await readFile(path.join(root, dir, f), 'utf8')) as T),
  );
}

export const readRecord = (root: string, id: string) => read<VolumeRecord>(root, REGISTRY_DIR, id);
export const writeRecord = (root: string, record: VolumeRecord) => write(root, REGISTRY_DIR, record.id, record);
export const removeRecord = (root: string, id: string) => rm(fileOf(root, REGISTRY_DIR, id), { force: true });
export const listRecords = (root: string) => list<VolumeRecord>(root, REGISTRY_DIR);

export const readSnapshot = (root: string, name: string) => read<SnapshotRecord>(root, SNAPSHOT_REGISTRY_DIR, name);
export const writeSnapshot = (root: string, record: SnapshotRecord) =>
  write(root, SNAPSHOT_REGISTRY_DIR, record.name, record);
export const removeSnapshot = (root: string, name: string) =>
  rm(fileOf(root, SNAPSHOT_REGISTRY_DIR, name), { force: true });
export const listSnapshots = (root: string) => list<SnapshotRecord>(root, SNAPSHOT_REGISTRY_DIR);
