// The dashboard as a cluster runs it — `jfs-sidecar dashboard` with the shipped ServiceAccount and its read-only
// RBAC (manifests/dashboard.yaml) — as a process on loopback against a control plane of ours. Shared by the
// dashboard's e2e tests and the bench.
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SYSTEM_NAMESPACE } from '../contract/keys.js';
import { applyObjects, CLI, readManifest, trackChild } from './components.js';
import { freePort, stopProcess, type ControlPlane } from './control-plane.js';

export const DASHBOARD_SA = 'jfs-sidecar-dashboard';

export interface DashboardStack {
  url: string;
  pid: number;
  /** The dashboard's ServiceAccount kubeconfig: what the shipped RBAC lets it do. */
  kubeconfig: string;
  logFile: string;
  /** Resident set size of the dashboard process now (bytes), from /proc. */
  rss(): number;
  stop(): Promise<void>;
}

/** The shipped namespace, CRD and the dashboard's RBAC (its Deployment and Service run here as a process). */
export async function applyDashboardRbac(cp: ControlPlane): Promise<void> {
  await applyObjects(cp.adminKubeConfig(), [
    ...readManifest('namespace.yaml'),
    ...readManifest('upgrade-crd.yaml'),
    ...readManifest('dashboard.yaml').filter((o) => o.kind !== 'Deployment' && o.kind !== 'Service'),
  ]);
}

export async function startDashboardStack(
  cp: ControlPlane,
  opts: { allowWrites?: boolean; dir?: string } = {},
): Promise<DashboardStack> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build`);
  await applyDashboardRbac(cp);
  const kubeconfig = await cp.serviceAccountKubeconfig(SYSTEM_NAMESPACE, DASHBOARD_SA);
  const port = await freePort();
  const args = [
    CLI,
    'dashboard',
    `--kubeconfig=${kubeconfig}`,
    '--host=127.0.0.1',
    `--port=${port}`,
    `--namespace=${SYSTEM_NAMESPACE}`,
    ...(opts.allowWrites ? ['--allow-writes'] : []),
  ];
  const child: ChildProcess = trackChild(spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  const logFile = path.join(opts.dir ?? cp.dir, 'dashboard.log');
  const log = createWriteStream(logFile, { flags: 'a' });
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  const url = `http://127.0.0.1:${port}/`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`dashboard exited with code ${child.exitCode}`);
    const ok = await fetch(`${url}readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline) throw new Error('dashboard did not become ready within 60 s');
    await sleep(200);
  }
  return {
    url,
    pid: child.pid!,
    kubeconfig,
    logFile,
    rss() {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      return m ? Number(m[1]) * 1024 : 0;
    },
    stop: () => stopProcess(child),
  };
}
