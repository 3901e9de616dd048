// BENCH_ONLY=dashboard: the dashboard's figures (issue 16). The served bundle's size (raw and gzip, from
// npm run build); with BENCH_DASH_PODS (default 1,000) JuiceFS pods in the API server (created, never run): the
// time from navigation to the pods page showing every one of them in Debian's Chromium (first and warm loads), and
// the dashboard process's RSS idle, after the pods, and with the browser connected.
import { CoreV1Api } from '@kubernetes/client-node';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { applyObjects, readManifest } from '../src/local/components.js';
import { ControlPlane } from '../src/local/control-plane.js';
import { startDashboardStack } from '../src/local/dashboard-stack.js';
import { PACKAGE_ROOT } from '../src/util/package-root.js';
import { launchChromium } from '../test/env/browser.js';

const NS = 'bench-dash';
const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
const kb = (b: number) => `${(b / 1024).toFixed(1)} KB`;

export async function dashboardLines(): Promise<string[]> {
  const pods = Number(process.env.BENCH_DASH_PODS ?? '1000');
  const sizes = JSON.parse(
    readFileSync(path.join(PACKAGE_ROOT, 'dist/src/dashboard/public/sizes.json'), 'utf8'),
  ) as Record<string, { raw: number; gzip: number }>;
  const lines = ['## Dashboard', '', '| file | raw | gzip |', '| --- | --- | --- |'];
  for (const [f, s] of Object.entries(sizes)) lines.push(`| ${f} | ${kb(s.raw)} | ${kb(s.gzip)} |`);
  const total = Object.values(sizes).reduce((a, s) => ({ raw: a.raw + s.raw, gzip: a.gzip + s.gzip }), {
    raw: 0,
    gzip: 0,
  });
  lines.push(`| total | ${kb(total.raw)} | ${kb(total.gzip)} |`, '');

  const cp = await ControlPlane.start({});
  process.once('exit', () => cp.killNow());
  try {
    const kc = cp.adminKubeConfig();
    const core = kc.makeApiClient(CoreV1Api);
    const sc = readManifest('storageclass-example.yaml').filter((o) => o.kind === 'StorageClass');
    // No kube-controller-manager here: the namespace's default ServiceAccount is made by hand.
    await applyObjects(kc, [
      ...sc,
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } },
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default', namespace: NS } },
    ]);
    await core.createNamespacedPersistentVolumeClaim({
      namespace: NS,
      body: {
        metadata: { name: 'data' },
        spec: {
          accessModes: ['ReadWriteMany'],
          storageClassName: 'juicefs-sc',
          resources: { requests: { storage: '1Gi' } },
        },
      },
    });
    const dash = await startDashboardStack(cp, {});
    try {
      await new Promise((r) => setTimeout(r, 1000));
      const rssIdle = dash.rss();
      const names = Array.from({ length: pods }, (_, i) => `p-${String(i).padStart(4, '0')}`);
      for (let i = 0; i < names.length; i += 25)
        await Promise.all(
          names.slice(i, i + 25).map((name) =>
            core.createNamespacedPod({
              namespace: NS,
              body: {
                metadata: { name, labels: { app: 'bench' } },
                spec: {
                  nodeName: `node-${i % 10}`,
                  containers: [{ name: 'app', image: 'busybox', volumeMounts: [{ name: 'd', mountPath: '/data' }] }],
                  volumes: [{ name: 'd', persistentVolumeClaim: { claimName: 'data' } }],
                },
              },
            }),
          ),
        );
      const last = names[names.length - 1];
      // Until the dashboard's informers have every pod.
      for (;;) {
        const view = (await (await fetch(`${dash.url}api/view`)).json()) as { view: { appPods: unknown[] } };
        if (view.view.appPods.length >= pods) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      const rssPods = dash.rss();
      const chrome = await launchChromium();
      const times: number[] = [];
      try {
        for (let i = 0; i < 4; i++) {
          const page = await chrome.context.newPage();
          const t0 = Date.now();
          await page.goto(`${dash.url}#/pods`);
          await page.getByRole('link', { name: `${NS}/${last}` }).waitFor({ timeout: 60_000 });
          times.push(Date.now() - t0);
          if (i < 3) await page.close();
        }
        const rssBrowser = dash.rss();
        const warm = [...times.slice(1)].sort((a, b) => a - b);
        lines.push(
          `Pods page with ${pods} JuiceFS pods in the API server, navigation → all ${pods} rows rendered ` +
            `(Chromium headless, the SSE view): first load ${times[0]} ms, warm loads ${warm.join(', ')} ms ` +
            `(median ${warm[1]} ms).`,
          '',
          `Dashboard RSS: idle ${mib(rssIdle)}, with ${pods} pods cached ${mib(rssPods)}, with a page connected ` +
            `${mib(rssBrowser)}.`,
        );
      } finally {
        await chrome.close();
      }
    } finally {
      await dash.stop();
    }
  } finally {
    await cp.stop();
  }
  return lines;
}
