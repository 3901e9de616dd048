// The per-volume work of CreateVolume, measured alone against a real JuiceFS volume (SQLite metadata, FUSE):
// the ways the client offers to make a PV's directory and quota, each at a few concurrencies, so the
// controller's choice (ADR 0024) rests on figures. Run: BENCH_ONLY=provision-ops npm run bench.
import { spawnSync } from 'node:child_process';
import { chmod, mkdir, rename, writeFile } from 'node:fs/promises';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { ensureBinaries } from '../src/local/control-plane.js';
import { JuicefsCli } from '../src/juicefs/cli.js';
import { KeyedPool } from '../src/util/pool.js';

const N = Number(process.env.BENCH_OPS_VOLUMES ?? '120');

interface Way {
  name: string;
  /** One volume's work; `root` is the FUSE mount. */
  run(cli: JuicefsCli, metaurl: string, root: string, dir: string): Promise<void>;
}

const record = async (root: string, dir: string) => {
  const f = path.join(root, '.records', `${dir}.json`);
  await writeFile(`${f}.tmp`, JSON.stringify({ id: dir }));
  await rename(`${f}.tmp`, f);
};

const WAYS: Way[] = [
  {
    name: 'record + mkdir + chmod through FUSE, then `juicefs quota set` (the controller)',
    run: async (cli, metaurl, root, dir) => {
      await record(root, dir);
      await mkdir(path.join(root, dir));
      await chmod(path.join(root, dir), 0o777);
      await cli.run(['quota', 'set', metaurl, `--path=/${dir}`, '--capacity=1'], []);
    },
  },
  {
    name: 'record through FUSE, `juicefs quota set --create`, chmod through FUSE',
    run: async (cli, metaurl, root, dir) => {
      await record(root, dir);
      await cli.run(['quota', 'set', metaurl, `--path=/${dir}`, '--create', '--capacity=1'], []);
      await chmod(path.join(root, dir), 0o777);
    },
  },
  {
    name: 'record + mkdir + chmod through FUSE only (no quota: what the quota costs)',
    run: async (_cli, _metaurl, root, dir) => {
      await record(root, dir);
      await mkdir(path.join(root, dir));
      await chmod(path.join(root, dir), 0o777);
    },
  },
];

export async function provisionOpsLines(): Promise<string[]> {
  const { juicefs } = ensureBinaries(['juicefs']);
  const dir = mkdtempSync(path.join(tmpdir(), 'jfs-bench-ops-'));
  const metaurl = `sqlite3://${dir}/meta.db`;
  const mnt = path.join(dir, 'mnt');
  mkdirSync(mnt);
  const cli = new JuicefsCli(juicefs, pino({ level: 'silent' }));
  const lines = [
    `## CreateVolume's filesystem work alone: ${N} volumes per cell, real JuiceFS (SQLite, FUSE), ms per volume`,
    '',
    '| way | 1 at a time | 4 at a time | 8 at a time |',
    '| --- | ---: | ---: | ---: |',
  ];
  try {
    const fmt = spawnSync(juicefs, ['format', '--storage=file', `--bucket=${dir}/data/`, metaurl, 'ops'], {
      encoding: 'utf8',
    });
    if (fmt.status !== 0) throw new Error(`juicefs format failed: ${fmt.stderr}`);
    await cli.run(['mount', '-d', '--no-usage-report', `--log=${dir}/mount.log`, metaurl, mnt], []);
    mkdirSync(path.join(mnt, '.records'));
    let serial = 0;
    for (const way of WAYS) {
      const cells: string[] = [];
      for (const concurrency of [1, 4, 8]) {
        const pool = new KeyedPool(concurrency);
        const t0 = process.hrtime.bigint();
        await Promise.all(
          Array.from({ length: N }, () => `v${serial++}`).map((d) =>
            pool.run('v', () => way.run(cli, metaurl, mnt, d)),
          ),
        );
        cells.push((Number(process.hrtime.bigint() - t0) / 1e6 / N).toFixed(1));
      }
      lines.push(`| ${way.name} | ${cells.join(' | ')} |`);
    }
    lines.push(`(load average at the end: ${(await import('node:os')).loadavg()[0].toFixed(1)})`);
  } finally {
    await cli.run(['umount', '--force', mnt], []).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
  return lines;
}
