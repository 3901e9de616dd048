// The sidecar's command as the injector renders it, run as a process in a
// mount namespace of its own (the test's "container"): for the suites that
// stop it (test/e2e/sidecar-stop*.test.ts). The namespace (its mounts and the
// fusectl mount the script may make) goes when its processes do.
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import type { Test } from 'tap';
import { configFromObjects } from '../../src/config/options.js';
import { injectObjects, parseManifests } from '../../src/offline/inject-manifests.js';
import { expand } from '../../src/local/expand.js';

const FIXTURE = path.join(import.meta.dirname, '../testdata/one-pvc.yaml');

/** The jfs-mount container the injector renders for the fixture. */
export function renderedSidecar(): V1Container {
  const objects = parseManifests(readFileSync(FIXTURE, 'utf8'), FIXTURE);
  const results = injectObjects(objects, { mode: 'sidecar', config: configFromObjects(objects) });
  const pod = results.find((r) => r.object.kind === 'Pod')!.object as V1Pod;
  const sidecar = pod.spec!.initContainers!.find((c) => c.name === 'jfs-mount');
  if (!sidecar) throw new Error('the injector rendered no jfs-mount container');
  return sidecar;
}

/** Its argv as kubelet would exec it here: $(VAR) expanded, then this machine's client, cache dir and port. */
export function argvHere(
  c: V1Container,
  vol: { juicefs: string },
  shell: string,
  cacheDir: string,
  port: number,
): string[] {
  const argv = [...(c.command ?? []), ...(c.args ?? [])].map((a) => expand(a, {}));
  if (argv[0] !== 'sh') throw new Error(`the sidecar's command is not sh -c <entrypoint>: ${argv[0]}`);
  return argv.map((a, i) => {
    if (i === 0) return shell;
    if (a === 'juicefs') return vol.juicefs;
    if (a.startsWith('--cache-dir=')) return `--cache-dir=${cacheDir}`;
    if (a.startsWith('--metrics=')) return `--metrics=127.0.0.1:${port}`;
    return a;
  });
}

/** Where the sidecar's files are in the volume: the fixture's PV subdirectory (`--subdir=`). */
export const SUBDIR = (() => {
  const flag = (renderedSidecar().command ?? []).find((a) => a.startsWith('--subdir='));
  return flag ? flag.slice('--subdir='.length) : '.';
})();

export const sh = (args: string[]) => spawnSync(args[0], args.slice(1), { encoding: 'utf8' });
export const inNs = (pid: number, script: string) => sh(['nsenter', '-t', String(pid), '-m', 'sh', '-c', script]);
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface Sidecar {
  child: ChildProcess;
  log: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

/** Starts the sidecar in its own mount namespace; on teardown, kills what is left in it, then removes the volume. */
export async function startSidecar(
  t: Test,
  vol: { remove(): void },
  argv: string[],
  env: Record<string, string>,
): Promise<Sidecar> {
  const child = spawn('unshare', ['-m', '--propagation', 'private', ...argv], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  // What kill(sh) alone would leave on a failure: juicefs, which keeps the namespace and its mounts.
  const ns = await namespaceOf(child.pid!);
  t.teardown(() => {
    killNamespace(ns);
    vol.remove();
  });
  const deadline = Date.now() + 30_000;
  while (!out.includes('is ready at')) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`the client did not mount:\n${out}`);
    await sleep(100);
  }
  return { child, log: () => out, exited };
}

const OWN_NAMESPACE = readlinkSync('/proc/self/ns/mnt');

/** The mount namespace of `pid` once unshare has made it: until then the pid is still in this process's. */
async function namespaceOf(pid: number): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const ns = readlinkSync(`/proc/${pid}/ns/mnt`);
    if (ns !== OWN_NAMESPACE) return ns;
    await sleep(20);
  }
  throw new Error(`pid ${pid} did not enter a mount namespace of its own`);
}

/** SIGKILL to every process in mount namespace `ns` (the test's own "container"), never this process's own. */
export function killNamespace(ns: string): void {
  if (ns === OWN_NAMESPACE) throw new Error("refusing to kill the processes of the test runner's own mount namespace");
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (readlinkSync(`/proc/${pid}/ns/mnt`) === ns) process.kill(Number(pid), 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
}
