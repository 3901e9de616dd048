// The controller's record of the volumes it provisioned, kept inside the
// JuiceFS volume itself (/.jfs-sidecar/volumes/), so that DeleteVolume, which
// gets only a volume id, knows the directory (a pathPattern can name any) and
// whether another PV shares it, with no state outside the volume.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
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

export function readRecord(root: string, id: string): VolumeRecord | undefined {
  const f = fileOf(root, id);
  if (!existsSync(f)) return undefined;
  return JSON.parse(readFileSync(f, 'utf8')) as VolumeRecord;
}

/** Written to a temporary name and renamed, so a crash never leaves half a record. */
export function writeRecord(root: string, record: VolumeRecord): void {
  const f = fileOf(root, record.id);
  mkdirSync(path.dirname(f), { recursive: true });
  const tmp = `${f}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(record));
  renameSync(tmp, f);
}

export function removeRecord(root: string, id: string): void {
  rmSync(fileOf(root, id), { force: true });
}

export function listRecords(root: string): VolumeRecord[] {
  const dir = path.join(root, REGISTRY_DIR);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as VolumeRecord);
}
