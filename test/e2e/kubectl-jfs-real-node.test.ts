// `kubectl jfs` as a newcomer meets it (issue 16's must-show), on the real node: the built plugin on PATH, found by
// the real kubectl (`kubectl plugin list`), `kubectl apply -f examples/`, then `kubectl jfs pods`, and
// `kubectl jfs debug pod app` on a healthy pod and on three broken ones (a missing Secret, an unbound PVC of a
// non-JuiceFS class, a crashed client), each naming the cause and the next step; the lists in Mount Pod mode,
// -o json|yaml, --context, the access log streamed until Ctrl-C, and warmup through a Mount Pod.
// Everything goes through the two executables and the API server, as a user's shell would.
import { execFile, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, symlinkSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { parse as parseYaml } from 'yaml';
import type { KubernetesObject } from '@kubernetes/client-node';
import { applyObjects } from '../../src/local/components.js';
import { ensureBinaries } from '../../src/local/control-plane.js';
import { WEBHOOK_NAMESPACE } from '../../src/local/webhook-stack.js';
import { ATTR } from '../../src/contract/keys.js';
import { eventually, staticJuicefsPv } from '../env/harness.js';
import { exec as podExecIn, podWhen, startSuiteWorld } from '../env/real-node-world.js';

t.setTimeout(25 * 60 * 1000);
const execFileP = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');
const PLUGIN = path.join(ROOT, 'dist/src/cli/kubectl-jfs.js');

const w = await startSuiteWorld(t, { nodePlugin: true });
if (w) {
  const kubectl = ensureBinaries(['kubectl']).kubectl;
  // A PATH with the plugin as `npm install -g` would put it there: an executable named kubectl-jfs.
  const bin = mkdtempSync(path.join(tmpdir(), 'jfs-kubectl-plugin-'));
  t.teardown(() => rmSync(bin, { recursive: true, force: true }));
  chmodSync(PLUGIN, 0o755);
  symlinkSync(PLUGIN, path.join(bin, 'kubectl-jfs'));
  const env = {
    ...process.env,
    PATH: `${bin}:${path.dirname(kubectl)}:${process.env.PATH ?? ''}`,
    KUBECONFIG: w.cp.adminKubeconfigPath,
  };
  interface Run {
    code: number;
    out: string;
    err: string;
  }
  const run = async (args: string[], timeoutMs = 60_000): Promise<Run> => {
    try {
      const r = await execFileP(kubectl, args, { env, cwd: ROOT, timeout: timeoutMs, maxBuffer: 16 << 20 });
      return { code: 0, out: r.stdout, err: r.stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof e.code === 'number' ? e.code : -1, out: e.stdout ?? '', err: e.stderr ?? '' };
    }
  };
  const jfs = (...args: string[]) => run(['jfs', ...args], 120_000);
  const apply = async (objects: KubernetesObject[]) => applyObjects(w.kc, objects);
  const lean = { [ATTR.cpuRequest]: '50m', [ATTR.memoryRequest]: '64Mi' };

  t.test('kubectl finds the plugin on PATH', async (t) => {
    const r = await run(['plugin', 'list']);
    t.equal(r.code, 0, r.err);
    t.match(r.out, path.join(bin, 'kubectl-jfs'), 'kubectl plugin list names kubectl-jfs');
    const h = await jfs('--help');
    t.match(
      h.out,
      /pods\|po[\s\S]*debug[\s\S]*accesslog[\s\S]*warmup[\s\S]*upgrade/,
      'kubectl jfs --help lists the commands',
    );
  });

  t.test("a newcomer's first minutes: apply the examples, list, debug the healthy pod", async (t) => {
    // The pod may be refused for a moment while the controller seals the new PVC's Secret copy: the webhook's
    // message says to retry, and a newcomer would.
    const applied = await eventually(
      async () => {
        const r = await run(['apply', '-f', 'examples/']);
        return r.code === 0 ? r : undefined;
      },
      90_000,
      'kubectl apply -f examples/ to succeed',
    );
    t.match(applied.out, /pod\/app created|pod\/app unchanged/, applied.out);
    await podWhen(
      w,
      'demo',
      'app',
      (p) => p.status?.containerStatuses?.some((s) => s.name === 'app' && s.ready) === true,
      180_000,
      'demo/app Running',
    );
    const pods = await jfs('pods', '-n', 'demo');
    t.equal(pods.code, 0, pods.err);
    t.comment(`$ kubectl jfs pods -n demo\n${pods.out}`);
    t.match(pods.out, /^NAME\s+MODE\s+PVCS\s+CLIENT\s+VERSION\s+READY\s+STATUS/m, 'a kubectl-like header');
    t.match(
      pods.out,
      /^app\s+sidecar\s+data\s+jfs-mount\s+ce-v\S+\s+1\/1\s+Running/m,
      'app: sidecar mode, PVC data, jfs-mount, Running',
    );
    const debug = await jfs('debug', 'pod', 'app', '-n', 'demo');
    t.comment(`$ kubectl jfs debug pod app -n demo\n${debug.out}`);
    t.equal(debug.code, 0, `healthy: exit 0 ${debug.err}`);
    t.match(debug.out, /✓ PersistentVolumeClaim demo\/data: Bound/, 'the chain: the PVC');
    t.match(debug.out, /✓ Secret juicefs-system\/juicefs-secret: present/, 'the chain: the Secret');
    t.match(debug.out, /✓ Container demo\/app\/jfs-mount: Running/, 'the chain: the sidecar');
    t.match(
      debug.out,
      /✓ Container demo\/app\/app:\/data: mounted\n\s+JuiceFS:/,
      'the chain: the app sees JuiceFS at /data (df)',
    );
    t.match(debug.out, /Healthy: pod demo\/app: no problem found/, 'the verdict');
    const asJson = await jfs('debug', 'pod', 'app', '-n', 'demo', '-o', 'json');
    const d = (JSON.parse(asJson.out) as { items: { healthy: boolean; findings: unknown[] }[] }).items[0];
    t.equal(d.healthy, true, '-o json: the same diagnosis');
    t.same(d.findings, []);
  });

  t.test('broken: a missing Secret (Mount Pod mode)', async (t) => {
    await apply([
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'broken-secret' } },
      staticJuicefsPv({
        name: 'broken-secret-pv',
        subPath: 'broken-secret',
        secret: { name: 'no-such-secret', namespace: WEBHOOK_NAMESPACE },
        claim: { namespace: 'broken-secret', name: 'data' },
      }),
      {
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        metadata: { name: 'data', namespace: 'broken-secret' },
        spec: {
          accessModes: ['ReadWriteMany'],
          storageClassName: '',
          volumeName: 'broken-secret-pv',
          resources: { requests: { storage: '1Gi' } },
        },
      } as KubernetesObject,
    ]);
    await eventually(
      () => w.core.readNamespacedServiceAccount({ name: 'default', namespace: 'broken-secret' }),
      30_000,
      'SA',
    );
    const pod = readFileSync(path.join(ROOT, 'examples/30-pod.yaml'), 'utf8').replace(
      'namespace: demo',
      'namespace: broken-secret',
    );
    const file = path.join(bin, 'broken-secret-pod.yaml');
    writeFileSync(file, pod);
    const r = await run(['apply', '-f', file]);
    t.equal(r.code, 0, `the pod is created (Mount Pod mode: no webhook) ${r.err}`);
    // The kubelet reports it cannot fetch the node-publish Secret.
    await eventually(
      async () =>
        (await w.core.listNamespacedEvent({ namespace: 'broken-secret' })).items.some(
          (e) => e.reason === 'FailedMount',
        ),
      120_000,
      'a FailedMount event',
    );
    const d = await jfs('debug', 'pod', 'app', '-n', 'broken-secret');
    t.comment(`$ kubectl jfs debug pod app -n broken-secret\n${d.out}`);
    t.equal(d.code, 3, 'exit 3: something is wrong');
    t.match(
      d.out,
      /PROBLEM \[secret-missing\] Secret juicefs-system\/no-such-secret, which PersistentVolume broken-secret-pv names for the volume's credentials, does not exist\./,
      'the cause',
    );
    t.match(d.out, /Next: Create it .*kubectl -n juicefs-system create secret generic no-such-secret/, 'the next step');
    t.match(d.out, /✗ Secret juicefs-system\/no-such-secret: missing/, 'the chain shows where it breaks');
  });

  t.test('broken: an unbound PVC of a non-JuiceFS class', async (t) => {
    await apply([
      {
        apiVersion: 'storage.k8s.io/v1',
        kind: 'StorageClass',
        metadata: { name: 'other-disk' },
        provisioner: 'example.com/other-disk',
      } as KubernetesObject,
    ]);
    const manifest = [
      'apiVersion: v1',
      'kind: PersistentVolumeClaim',
      'metadata: {name: scratch, namespace: demo}',
      'spec: {accessModes: [ReadWriteOnce], storageClassName: other-disk, resources: {requests: {storage: 1Gi}}}',
      '---',
      'apiVersion: v1',
      'kind: Pod',
      'metadata: {name: app-scratch, namespace: demo}',
      'spec:',
      '  containers: [{name: app, image: busybox, command: [sleep, infinity], volumeMounts: [{name: d, mountPath: /data}]}]',
      '  volumes: [{name: d, persistentVolumeClaim: {claimName: scratch}}]',
    ].join('\n');
    const file = path.join(bin, 'scratch.yaml');
    writeFileSync(file, manifest);
    const r = await run(['apply', '-f', file]);
    t.equal(r.code, 0, `created (not a JuiceFS volume: the webhook leaves it alone) ${r.err}`);
    await eventually(
      async () =>
        (await w.core.readNamespacedPod({ namespace: 'demo', name: 'app-scratch' })).status?.conditions?.some(
          (c) => c.type === 'PodScheduled' && c.status === 'False',
        ),
      60_000,
      'the scheduler to report the unbound claim',
    );
    const d = await jfs('debug', 'pod', 'app-scratch', '-n', 'demo');
    t.comment(`$ kubectl jfs debug pod app-scratch -n demo\n${d.out}`);
    t.equal(d.code, 3);
    t.match(
      d.out,
      /PROBLEM \[pvc-not-juicefs\] PersistentVolumeClaim demo\/scratch is Pending and is not a JuiceFS volume: its StorageClass other-disk belongs to provisioner example.com\/other-disk, not csi.juicefs.com/,
      'the cause',
    );
    t.match(
      d.out,
      /Next: If it should be JuiceFS, re-create the PVC with storageClassName set to a JuiceFS class/,
      'the next step',
    );
    const pvc = await jfs('debug', 'pvc', 'scratch', '-n', 'demo');
    t.match(pvc.out, /\[pvc-not-juicefs\]/, 'debug pvc says the same');
  });

  t.test('broken: a crashed client (sidecar mode, a metaurl with no volume behind it)', async (t) => {
    await apply([
      {
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: { name: 'broken-client', labels: { 'juicefs.com/enable-injection': 'true' } },
      },
      {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 'wrong-metaurl', namespace: WEBHOOK_NAMESPACE },
        stringData: { name: 'e2e', metaurl: 'sqlite3:///var/jfsCache/no-such-volume/meta.db' },
      } as KubernetesObject,
      (() => {
        const pv = staticJuicefsPv({
          name: 'broken-client-pv',
          subPath: 'broken-client',
          secret: { name: 'wrong-metaurl', namespace: WEBHOOK_NAMESPACE },
          claim: { namespace: 'broken-client', name: 'data' },
        }) as KubernetesObject & { spec: { csi: { volumeAttributes: Record<string, string> } } };
        pv.spec.csi.volumeAttributes = { ...pv.spec.csi.volumeAttributes, ...lean };
        return pv;
      })(),
      {
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        metadata: { name: 'data', namespace: 'broken-client' },
        spec: {
          accessModes: ['ReadWriteMany'],
          storageClassName: '',
          volumeName: 'broken-client-pv',
          resources: { requests: { storage: '1Gi' } },
        },
      } as KubernetesObject,
    ]);
    await eventually(
      () => w.core.readNamespacedServiceAccount({ name: 'default', namespace: 'broken-client' }),
      30_000,
      'SA',
    );
    const file = path.join(bin, 'broken-client-pod.yaml');
    writeFileSync(
      file,
      readFileSync(path.join(ROOT, 'examples/30-pod.yaml'), 'utf8').replace(
        'namespace: demo',
        'namespace: broken-client',
      ),
    );
    await eventually(
      async () => ((await run(['apply', '-f', file])).code === 0 ? true : undefined),
      90_000,
      'the pod to be admitted',
    );
    await podWhen(
      w,
      'broken-client',
      'app',
      (p) => (p.status?.initContainerStatuses?.find((s) => s.name === 'jfs-mount')?.restartCount ?? 0) >= 2,
      240_000,
      'the sidecar to have crashed twice',
    );
    const pods = await jfs('pods', '-n', 'broken-client');
    t.comment(`$ kubectl jfs pods -n broken-client\n${pods.out}`);
    t.match(
      pods.out,
      /^app\s+sidecar\s+data\s+jfs-mount\s+\S+\s+0\/1\s+Init:(CrashLoopBackOff|Error)/m,
      'the list shows the crash',
    );
    const d = await jfs('debug', 'pod', 'app', '-n', 'broken-client');
    t.comment(`$ kubectl jfs debug pod app -n broken-client\n${d.out}`);
    t.equal(d.code, 3);
    t.match(
      d.out,
      /PROBLEM \[client-crashed\] The JuiceFS client \(sidecar jfs-mount of pod broken-client\/app\) keeps crashing/,
      'the cause',
    );
    t.match(
      d.out,
      /Next: Read why in its log: kubectl -n broken-client logs app -c jfs-mount --previous/,
      'the next step',
    );
    t.match(d.out, /Last log lines of broken-client\/app jfs-mount/, "the client's last log lines");
  });

  t.test('Mount Pod mode: mounts, pvc, pv, -o yaml, -A, --context; warmup through the Mount Pod', async (t) => {
    await eventually(
      async () => ((await run(['apply', '-f', 'examples/mount-pod-mode/'])).code === 0 ? true : undefined),
      60_000,
      'apply',
    );
    for (const name of ['writer', 'reader'])
      await podWhen(w, 'demo-mp', name, (p) => p.status?.phase === 'Running', 180_000, `demo-mp/${name} Running`);
    const pods = await jfs('pods', '-A');
    t.comment(`$ kubectl jfs pods -A\n${pods.out}`);
    t.match(
      pods.out,
      /^demo-mp\s+reader\s+mount-pod\s+shared\s+juicefs-localhost-/m,
      'reader: Mount Pod mode, its Mount Pod',
    );
    t.match(pods.out, /^demo\s+app\s+sidecar/m, '-A lists the other namespaces too');
    const mounts = await jfs('mounts');
    t.comment(`$ kubectl jfs mounts\n${mounts.out}`);
    t.match(
      mounts.out,
      /^juicefs-localhost-\S+\s+pvc-\S+\s+localhost\s+2\s+demo-mp\/(reader,demo-mp\/writer|writer,demo-mp\/reader)\s/m,
      'one Mount Pod, two references, both app pods',
    );
    const pvc = await jfs('pvc', '-n', 'demo-mp', '-o', 'yaml');
    const rows = (parseYaml(pvc.out) as { items: { name: string; status: string; pods: string[] }[] }).items;
    t.same(
      rows.map((r) => [r.name, r.status, [...r.pods].sort()]),
      [['shared', 'Bound', ['reader', 'writer']]],
      '-o yaml rows',
    );
    const pv = await jfs('pv', '-o', 'wide');
    t.match(
      pv.out,
      /^NAME\s+CAPACITY\s+STATUS\s+CLAIM\s+STORAGECLASS\s+MOUNT PODS\s+AGE\s+SUBPATH\s+VOLUMEHANDLE\s+SECRET$/m,
      '-o wide adds columns',
    );
    t.match(pv.out, /demo-mp\/shared/, 'the claim');
    const ctx = await jfs('pods', '-n', 'demo-mp', '--context', 'no-such-context');
    t.equal(ctx.code, 1);
    t.match(
      ctx.err,
      /^error: context "no-such-context" does not exist in the kubeconfig/,
      'an unknown context: one clear line',
    );
    const bad = await jfs('pods', '-o', 'table-please');
    t.match(bad.err, /unable to match a printer suitable for the output format "table-please"/);
    const d = await jfs('debug', 'pod', 'writer', '-n', 'demo-mp');
    t.comment(`$ kubectl jfs debug pod writer -n demo-mp\n${d.out}`);
    t.equal(d.code, 0, 'Mount Pod mode, healthy');
    t.match(
      d.out,
      /✓ Pod juicefs-system\/juicefs-localhost-\S+: Running\n\s+Mount Pod/,
      'the chain reaches the Mount Pod',
    );
    const warm = await jfs('warmup', 'writer', '-n', 'demo-mp');
    t.comment(`$ kubectl jfs warmup writer -n demo-mp\n${warm.out}${warm.err}`);
    t.equal(warm.code, 0, `warmup through the Mount Pod ${warm.err}`);
    t.match(warm.err, /Warming up \/var\/lib\/juicefs\/volume\/\S+ through Mount Pod juicefs-localhost-/);
    const side = await jfs('warmup', 'app', '-n', 'demo');
    t.equal(side.code, 1);
    t.match(
      side.err,
      /sidecar mode: juicefs warmup must run in its jfs-mount container, and the after-admission policy refuses exec/,
      'sidecar mode: why not, and what instead',
    );
  });

  t.test('accesslog streams until Ctrl-C', async (t) => {
    const child = spawn('kubectl', ['jfs', 'accesslog', 'app', '-n', 'demo'], { env, cwd: ROOT });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await eventually(async () => (err.includes('Streaming') ? true : undefined), 30_000, 'the stream to start');
    // What the plugin printed, when the log line below does not come (the run shows it).
    t.teardown(() => {
      if (!out.includes('accesslog-probe-'))
        t.comment(`accesslog stdout:\n${out.slice(-2000)}\nstderr:\n${err.slice(-2000)}`);
    });
    // Traffic in the volume while the log streams: a file of a new name each time, so the kernel cannot answer
    // from its entry cache and the client must log the operation by name.
    const probe = `accesslog-probe-${Date.now()}`;
    await eventually(
      async () => {
        await podExecIn(w, 'demo', 'app', 'app', ['sh', '-c', `touch /data/${probe}-$RANDOM.txt`]);
        return out.includes(probe) ? true : undefined;
      },
      30_000,
      `an access log line naming ${probe}`,
    );
    child.kill('SIGINT');
    const code = await exited;
    t.match(out, new RegExp(`create \\(1,${probe}-\\d+\\.txt[,)]`), 'the access log names the file the app created');
    t.equal(code, 130, 'Ctrl-C ends it (exit 130)');
  });
}
