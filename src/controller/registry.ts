// The controller's record of the volumes it provisioned, kept inside the
// JuiceFS volume itself (/.jfs-sidecar/volumes/), so that DeleteVolume, which
// gets only a volume id, knows the directory (a pathPattern can name any) and
// whether another PV shares it, with no state outside the volume.
import { createHash } from 'node:crypto';
// Asynchronous I/O: the record lives on the FUSE mount, and a synchronous call there would hold the controller's
// event loop (every other CreateVolume in flight) for a metadata round trip.
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

export const REGISTRY_DIR = '.jfs-sidecar/volumes';

export interface VolumeRecord {
  id: string;
  /** Directory relative to the volume root. */
  subdir: string;
  /** Quota in bytes; 0 when the request named no capacity. */
  capacityBytes: number;
  createdAt: string;
}

function fileOf(root: string, id: string): string {
  return path.join(root, REGISTRY_DIR, `${createHash('sha256').update(id).digest('hex')}.json`);
}

const missing = (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOENT';

export async function readRecord(root: string, id: string): Promise<VolumeRecord | undefined> {
  let text: string;
  try {
    text = await readFile(fileOf(root, id), 'utf8');
  } catch (err) {
    if (missing(err)) return undefined;
    throw err;
  }
  return JSON.parse(text) as VolumeRecord;
}

/** Written to a temporary name and renamed, so a crash never leaves half a record. */
export async function writeRecord(root: string, record: VolumeRecord): Promise<void> {
  const f = fileOf(root, record.id);
  await mkdir(path.dirname(f), { recursive: true });
  const tmp = `${f}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(record));
  await rename(tmp, f);
}

export async function removeRecord(root: string, id: string): Promise<void> {
  await rm(fileOf(root, id), { force: true });
}

export async function listRecords(root: string): Promise<VolumeRecord[]> {
  const dir = path.join(root, REGISTRY_DIR);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if (missing(err)) return [];
    throw err;
  }
  return Promise.all(
    names
      .filter((f) => f.endsWith('.json'))
      .map(async (f) => JSON.parse(await readFile(path.join(dir, f), 'utf8')) as VolumeRecord),
  );
}
