// A real JuiceFS volume for tests: SQLite metadata and local file storage in a
// temporary folder, formatted by the real client.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureBinaries } from '../../src/local/control-plane.js';

export interface TestVolume {
  dir: string;
  juicefs: string;
  name: string;
  metaurl: string;
  bucket: string;
  /** The Secret keys of this volume, as a CSI `secrets` map or a Secret's stringData. */
  secrets: Record<string, string>;
  /** Runs the juicefs client; throws on failure. */
  run(args: string[]): string;
  remove(): void;
}

export function makeVolume(name = 'testvol'): TestVolume {
  const { juicefs } = ensureBinaries(['juicefs']);
  const dir = mkdtempSync(path.join(tmpdir(), 'jfs-vol-'));
  const metaurl = `sqlite3://${dir}/meta.db`;
  const bucket = `${dir}/data/`;
  const run = (args: string[]) => {
    const r = spawnSync(juicefs, args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`juicefs ${args[0]} failed: ${r.stderr.split('\n').slice(-3).join(' ')}`);
    return r.stdout;
  };
  try {
    run(['format', '--storage=file', `--bucket=${bucket}`, '--trash-days=0', metaurl, name]);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    dir,
    juicefs,
    name,
    metaurl,
    bucket,
    secrets: { name, metaurl, storage: 'file', bucket },
    run,
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Mounts the volume with the real client through FUSE, runs fn on it, unmounts. */
export async function withFuseMount<T>(vol: TestVolume, fn: (mnt: string) => Promise<T> | T): Promise<T> {
  const mnt = mkdtempSync(path.join(tmpdir(), 'jfs-mnt-'));
  vol.run(['mount', '-d', '--no-usage-report', `--cache-dir=${vol.dir}/cache`, vol.metaurl, mnt]);
  try {
    return await fn(mnt);
  } finally {
    vol.run(['umount', mnt]);
    rmSync(mnt, { recursive: true, force: true });
  }
}
