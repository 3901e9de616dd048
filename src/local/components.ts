// The project's own components run as real processes against a control plane,
// and the project's own manifests applied to it (shared by `jfs-sidecar local`
// and the control-plane tests).
import { KubernetesObjectApi, loadYaml, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, createWriteStream, existsSync, readdirSync, readFileSync } from 'node:fs';
import { request } from 'node:https';
import path from 'node:path';
import { parseManifests } from '../offline/inject-manifests.js';
import { unlessNotFound } from '../k8s/errors.js';
import { freePort, stopProcess } from './control-plane.js';
import { PACKAGE_ROOT } from '../util/package-root.js';
import { setTimeout as sleep } from 'node:timers/promises';

export const MANIFESTS = path.join(PACKAGE_ROOT, 'manifests');
export const CLI = path.join(PACKAGE_ROOT, 'dist/src/cli/main.js');

/**
 * The objects of a manifest file, in the client's model form: its serializer sends only the fields it knows by
 * their model names, so wire names such as a CRD's `x-kubernetes-int-or-string` would be dropped silently.
 */
export function readManifest(file: string): KubernetesObject[] {
  return parseManifests(readFileSync(path.join(MANIFESTS, file), 'utf8'), file).map((o) =>
    loadYaml<KubernetesObject>(JSON.stringify(o)),
  );
}

/** Create-or-replace, as `kubectl apply` would for objects this tool owns. */
export async function applyObjects(kc: KubeConfig, objects: KubernetesObject[]): Promise<void> {
  const api = KubernetesObjectApi.makeApiClient(kc);
  for (const obj of objects) {
    const existing = await unlessNotFound(
      api.read(obj as KubernetesObject & { metadata: { name: string; namespace?: string } }),
    );
    if (existing)
      await api.replace({ ...obj, metadata: { ...obj.metadata, resourceVersion: existing.metadata?.resourceVersion } });
    else await api.create(obj);
  }
}

export interface WebhookProcessOptions {
  kubeconfig: string;
  namespace: string;
  secretNamespaces: string[];
  port?: number;
  logFile?: string;
  extraArgs?: string[];
}

export class WebhookProcess {
  private child: ChildProcess | undefined;
  private constructor(
    readonly port: number,
    private readonly opts: WebhookProcessOptions,
  ) {}

  static async start(opts: WebhookProcessOptions): Promise<WebhookProcess> {
    const wp = new WebhookProcess(opts.port ?? (await freePort()), opts);
    await wp.spawn();
    return wp;
  }

  /** (Re)starts the process and waits until /readyz answers 200. */
  async spawn(): Promise<void> {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build`);
    const args = [
      CLI,
      'webhook',
      `--kubeconfig=${this.opts.kubeconfig}`,
      '--host=127.0.0.1',
      `--port=${this.port}`,
      `--namespace=${this.opts.namespace}`,
      '--extra-host=127.0.0.1',
      ...this.opts.secretNamespaces.map((n) => `--secret-namespace=${n}`),
      ...(this.opts.extraArgs ?? []),
    ];
    const child = trackChild(
      spawn(process.execPath, args, {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'info' },
      }),
    );
    if (this.opts.logFile) {
      const log = createWriteStream(this.opts.logFile, { flags: 'a' });
      child.stdout!.pipe(log);
      child.stderr!.pipe(log);
    } else {
      child.stdout!.resume();
      child.stderr!.resume();
    }
    this.child = child;
    const deadline = Date.now() + 60_000;
    while (!(await this.ready())) {
      if (child.exitCode !== null) throw new Error(`webhook exited with code ${child.exitCode}`);
      if (Date.now() > deadline) throw new Error('webhook did not become ready within 60s');
      await sleep(200);
    }
  }

  /** GET /readyz; the body tells which ConfigMap version is loaded. */
  async readyz(): Promise<{ status: number; body: Record<string, unknown> }> {
    return new Promise((resolve) => {
      const req = request(
        { host: '127.0.0.1', port: this.port, path: '/readyz', rejectUnauthorized: false, timeout: 2000 },
        (res) => {
          let text = '';
          res.on('data', (c) => (text += c));
          res.on('end', () => {
            try {
              resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> });
            } catch {
              resolve({ status: res.statusCode ?? 0, body: {} });
            }
          });
        },
      );
      req.on('error', () => resolve({ status: 0, body: {} }));
      req.on('timeout', () => req.destroy());
      req.end();
    });
  }

  async ready(): Promise<boolean> {
    return (await this.readyz()).status === 200;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async stop(): Promise<void> {
    if (this.child) await stopProcess(this.child);
  }
}

/** Children still alive: killed at once if this process exits without stopping them (a crashed test). */
const liveChildren = new Set<ChildProcess>();
const groupLeaders = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of liveChildren) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const c of groupLeaders) killGroup(c, 'SIGKILL');
});

/** Signals every process of a child's process group (spawned with `detached: true`); a group already gone is fine. */
export function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (child.pid) process.kill(-child.pid, signal);
  } catch {
    // ESRCH: nothing left in the group
  }
}

/**
 * Waits until no process of a child's process group is left (zombies, which
 * nothing may reap here, do not count); returns the pids still there at the
 * time-out.
 */
export async function waitGroupGone(child: ChildProcess, timeoutMs: number): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = child.pid ? liveGroupMembers(child.pid) : [];
    if (left.length === 0 || Date.now() > deadline) return left;
    await sleep(20);
  }
}

/** The live (not zombie) processes of a process group, from /proc. */
function liveGroupMembers(pgid: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // pid (comm) state ppid pgrp …; comm may hold spaces and parentheses, so read after the last ')'.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z') pids.push(Number(entry));
  }
  return pids;
}

/**
 * Kills the child if this process exits first. With `group`, the child leads a
 * process group (spawned detached) whose members all die with it, as a
 * container's processes do when its first process exits.
 */
export function trackChild(child: ChildProcess, opts: { group?: boolean } = {}): ChildProcess {
  liveChildren.add(child);
  if (opts.group) groupLeaders.add(child);
  child.once('exit', () => {
    liveChildren.delete(child);
    if (opts.group) {
      killGroup(child, 'SIGKILL');
      groupLeaders.delete(child);
    }
  });
  return child;
}

/** A child process (a jfs-sidecar subcommand, csi-provisioner, …), its output in a log file. */
export class ManagedProcess {
  private child: ChildProcess | undefined;
  private stopping = false;
  /** How many times the process was restarted after exiting on its own. */
  restarts = 0;
  constructor(
    private readonly command: string,
    private readonly args: string[],
    private readonly logFile: string,
    /** Restart when it exits on its own, as kubelet does for a container with restartPolicy Always. */
    private readonly restartAlways = false,
  ) {}

  /** `jfs-sidecar <args>` from the compiled CLI. */
  static cli(args: string[], logFile: string): ManagedProcess {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build`);
    return new ManagedProcess(process.execPath, [CLI, ...args], logFile);
  }

  start(): this {
    const child = trackChild(spawn(this.command, this.args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    const log = createWriteStream(this.logFile, { flags: 'a' });
    child.stdout!.pipe(log);
    child.stderr!.pipe(log);
    this.child = child;
    if (this.restartAlways) {
      child.once('exit', (code, signal) => {
        if (this.stopping) return;
        appendFileSync(
          this.logFile,
          `[harness, playing kubelet] ${path.basename(this.command)} exited (${code ?? signal}); restarting it\n`,
        );
        this.restarts++;
        setTimeout(() => !this.stopping && this.start(), 1000).unref();
      });
    }
    return this;
  }

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Kills the process at once, as a crash would. */
  kill(): void {
    this.child?.kill('SIGKILL');
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.child) await stopProcess(this.child);
  }

  log(lines = 40): string {
    return existsSync(this.logFile)
      ? readFileSync(this.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
      : '';
  }
}

/** Waits for a Unix socket file to appear (the CSI server is listening). */
export async function waitForSocket(sock: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(sock)) {
    if (Date.now() > deadline) throw new Error(`${sock} did not appear within ${timeoutMs} ms`);
    await sleep(100);
  }
}
