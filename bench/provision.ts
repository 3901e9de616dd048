// Dynamic provisioning benchmark: N PVCs of a JuiceFS StorageClass created back to back → Bound, through the
// real csi-provisioner and kube-controller-manager. Two modes in one run, on fresh control planes:
// - `real`: `jfs-sidecar controller` with a real JuiceFS volume (SQLite metadata, local file storage): each PV
//   gets its directory, quota and record;
// - `noop`: the same harness with bench/noop-csi-controller.ts, a CreateVolume that does no filesystem work.
// The ratio real / noop is the figure: how much the controller's own work slows provisioning down.
import { CoreV1Api, Watch, type KubernetesObject, type V1PersistentVolumeClaim } from '@kubernetes/client-node';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { applyObjects, readManifest } from '../src/local/components.js';
import { ControlPlane, ensureBinaries } from '../src/local/control-plane.js';
import { startControllerStack, type ControllerStack } from '../src/local/controller-stack.js';

const here = path.dirname(fileURLToPath(import.meta.url));

const KCM_QPS = Number(process.env.BENCH_KCM_QPS ?? '300');

export type ProvisionMode = 'real' | 'noop';

export interface ProvisionResult {
  mode: ProvisionMode;
  count: number;
  seconds: number;
  perSecond: number;
  p50: number;
  p99: number;
  /** CreateVolume calls as the controller logged them: how many, and their median / p99 ms. */
  calls?: { count: number; p50: number; p99: number; failed: number };
  /** real mode: directories and quotas found in the volume afterwards (the work was really done). */
  checked?: { quotas: number };
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

export async function provisionThroughput(count: number, mode: ProvisionMode): Promise<ProvisionResult> {
  // kube-controller-manager binds each PVC with ~5 writes; at its default 20 QPS that caps any provisioner at
  // 4 PVCs/s, whatever the driver does. A cluster that provisions in bulk raises it, as this does for both modes.
  const cp = await ControlPlane.start({
    controllerManager: true,
    controllerManagerArgs: [`--kube-api-qps=${KCM_QPS}`, `--kube-api-burst=${KCM_QPS * 2}`],
  });
  const dir = mkdtempSync(path.join(tmpdir(), `jfs-bench-prov-${mode}-`));
  const volDir = path.join(dir, 'vol');
  const { juicefs } = ensureBinaries(['juicefs']);
  const metaurl = `sqlite3://${volDir}/meta.db`;
  mkdirSync(volDir, { recursive: true });
  const fmt = spawnSync(juicefs, ['format', '--storage=file', `--bucket=${volDir}/data/`, metaurl, 'bench'], {
    encoding: 'utf8',
  });
  if (fmt.status !== 0) throw new Error(`juicefs format failed: ${fmt.stderr}`);
  let stack: ControllerStack | undefined;
  let abortWatch: (() => void) | undefined;
  try {
    const admin = cp.adminKubeConfig();
    const core = admin.makeApiClient(CoreV1Api);
    await applyObjects(admin, [
      ...readManifest('namespace.yaml'),
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'prov' } },
      {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 'juicefs-secret', namespace: 'juicefs-system' },
        stringData: { name: 'bench', metaurl },
      } as KubernetesObject,
      {
        apiVersion: 'storage.k8s.io/v1',
        kind: 'StorageClass',
        metadata: { name: 'jfs' },
        provisioner: 'csi.juicefs.com',
        reclaimPolicy: 'Delete',
        parameters: {
          'csi.storage.k8s.io/provisioner-secret-name': 'juicefs-secret',
          'csi.storage.k8s.io/provisioner-secret-namespace': 'juicefs-system',
          'csi.storage.k8s.io/node-publish-secret-name': 'juicefs-secret',
          'csi.storage.k8s.io/node-publish-secret-namespace': 'juicefs-system',
        },
      } as KubernetesObject,
    ]);
    stack = await startControllerStack(cp, {
      dir,
      secretNamespaces: ['juicefs-system'],
      controllerScript: mode === 'noop' ? path.join(here, 'noop-csi-controller.js') : undefined,
    });
    const created = new Map<string, number>();
    const boundAt = new Map<string, number>();
    let allBound: () => void = () => undefined;
    const done = new Promise<void>((resolve) => (allBound = resolve));
    const seen = (pvc: V1PersistentVolumeClaim) => {
      const name = pvc.metadata?.name;
      if (name && pvc.status?.phase === 'Bound' && !boundAt.has(name)) {
        boundAt.set(name, Date.now());
        if (boundAt.size === count) allBound();
      }
    };
    // A watch for exact times, not a LIST loop (no load of ours while the cluster works); when it ends (the
    // API server closes watches; a busy machine drops them), one LIST catches up and a new watch resumes.
    let stopped = false;
    const watchFrom = async (): Promise<void> => {
      const list = await core.listNamespacedPersistentVolumeClaim({ namespace: 'prov' });
      list.items.forEach(seen);
      if (stopped || boundAt.size === count) return;
      const req = await new Watch(admin).watch(
        '/api/v1/namespaces/prov/persistentvolumeclaims',
        { resourceVersion: list.metadata?.resourceVersion },
        (_type: string, pvc: V1PersistentVolumeClaim) => seen(pvc),
        () => void (stopped ? undefined : watchFrom().catch(() => setTimeout(() => void watchFrom(), 1000))),
      );
      abortWatch = () => {
        stopped = true;
        req.abort();
      };
    };
    await watchFrom();
    const t0 = Date.now();
    // Eight creators in parallel: the PVCs arrive faster than any provisioner takes them.
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        for (let i = next++; i < count; i = next++) {
          const name = `pvc-${i}`;
          created.set(name, Date.now());
          await core.createNamespacedPersistentVolumeClaim({
            namespace: 'prov',
            body: {
              metadata: { name },
              spec: {
                accessModes: ['ReadWriteMany'],
                storageClassName: 'jfs',
                resources: { requests: { storage: '1Gi' } },
              },
            },
          });
        }
      }),
    );
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(
        () => reject(new Error(`${mode}: only ${boundAt.size} of ${count} PVCs Bound after 30 minutes`)),
        30 * 60_000,
      ).unref(),
    );
    await Promise.race([done, timeout]);
    const seconds = (Date.now() - t0) / 1000;
    const lat = [...boundAt].map(([n, at]) => (at - created.get(n)!) / 1000);
    const result: ProvisionResult = {
      mode,
      count,
      seconds,
      perSecond: count / seconds,
      p50: quantile(lat, 0.5),
      p99: quantile(lat, 0.99),
    };
    if (mode === 'real') {
      result.checked = checkVolume(juicefs, metaurl);
      result.calls = createVolumeCalls(path.join(dir, 'controller.log'));
    }
    return result;
  } finally {
    abortWatch?.();
    await stack?.stop();
    await cp.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The controller's CreateVolume calls from its log (one JSON line per call, with its duration). */
function createVolumeCalls(logFile: string): ProvisionResult['calls'] {
  const ms: number[] = [];
  let failed = 0;
  for (const line of readFileSync(logFile, 'utf8').split('\n')) {
    if (!line.includes('"Controller/CreateVolume"')) continue;
    const entry = JSON.parse(line) as { ms: number; code?: string };
    if (entry.code) failed++;
    else ms.push(entry.ms);
  }
  return { count: ms.length, p50: quantile(ms, 0.5), p99: quantile(ms, 0.99), failed };
}

/** How many PV directories (pvc-<uid>) have a quota in the volume: `juicefs quota list`, after the run. */
function checkVolume(juicefs: string, metaurl: string): { quotas: number } {
  const out = spawnSync(juicefs, ['quota', 'list', metaurl], { encoding: 'utf8' });
  return { quotas: new Set(out.stdout.match(/\/pvc-[0-9a-f-]{36}/g) ?? []).size };
}

export function provisionLines(real: ProvisionResult, noop: ProvisionResult | undefined): string[] {
  const lines = [
    `## Dynamic provisioning: ${real.count.toLocaleString('en')} PVCs created back to back → Bound ` +
      '(csi-provisioner + kube-controller-manager; one control plane per mode)',
    '',
    '| mode | all Bound in | PVCs/s | time to Bound p50 / p99 |',
    '| --- | ---: | ---: | ---: |',
  ];
  for (const r of [real, noop]) {
    if (!r) continue;
    const what =
      r.mode === 'real'
        ? 'real controller, real JuiceFS volume (dir + quota + record)'
        : 'CreateVolume doing no filesystem work';
    lines.push(
      `| ${what} | ${r.seconds.toFixed(1)} s | ${r.perSecond.toFixed(1)} | ${r.p50.toFixed(1)} / ${r.p99.toFixed(1)} s |`,
    );
  }
  if (real.checked) lines.push(`quotas found in the volume afterwards: ${real.checked.quotas} of ${real.count}`);
  if (real.calls)
    lines.push(
      `CreateVolume in the controller: ${real.calls.count} ok, ${real.calls.failed} failed (retried); ` +
        `median ${real.calls.p50} ms, p99 ${real.calls.p99} ms (queueing for the quota pool included)`,
    );
  if (noop) {
    const ratio = real.seconds / noop.seconds;
    lines.push(
      `ratio real / no-filesystem baseline: ${ratio.toFixed(2)} (target ≤ 1.2 → ${ratio <= 1.2 ? 'met' : 'NOT met'})`,
    );
  }
  return lines;
}
