// Issue 11, classes 1 and 2: a PVC gets only a PV whose claimRef names it (and
// the controller copies no other Secret), and the pod UID variable behind an
// app container's subPathExpr has exactly one definition, the injector's.
import type {
  V1Container,
  V1ObjectReference,
  V1PersistentVolume,
  V1PersistentVolumeClaim,
  V1Pod,
} from '@kubernetes/client-node';
import t from 'tap';
import { parseGlobalConfig } from '../../src/config/schema.js';
import { POD_UID_ENV } from '../../src/contract/keys.js';
import { DenyError } from '../../src/contract/deny.js';
import { injectPod } from '../../src/inject/inject.js';
import { resolveVolumes, sourceSecretOf } from '../../src/resolve/resolve.js';
import { ObjectView } from '../../src/resolve/object-view.js';
import type { ResolvedVolume } from '../../src/resolve/types.js';

const pv = (claimRef?: V1ObjectReference) =>
  ({
    apiVersion: 'v1',
    kind: 'PersistentVolume',
    metadata: { name: 'victim-pv' },
    spec: {
      claimRef,
      csi: {
        driver: 'csi.juicefs.com',
        volumeHandle: 'victim-pv',
        nodePublishSecretRef: { name: 'victim-secret', namespace: 'kube-system' },
        volumeAttributes: { subPath: 'victim' },
      },
    },
  }) as V1PersistentVolume;

const attackerPvc: V1PersistentVolumeClaim = {
  apiVersion: 'v1',
  kind: 'PersistentVolumeClaim',
  metadata: { name: 'data', namespace: 'attacker', uid: 'uid-attacker' },
  spec: { volumeName: 'victim-pv', storageClassName: '' },
};
const secret = {
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name: 'victim-secret', namespace: 'kube-system' },
  data: { name: Buffer.from('v').toString('base64'), metaurl: Buffer.from('redis://victim').toString('base64') },
};
const pod: V1Pod = {
  metadata: { name: 'app', namespace: 'attacker' },
  spec: {
    containers: [{ name: 'app', image: 'busybox', volumeMounts: [{ name: 'data', mountPath: '/data' }] }],
    volumes: [{ name: 'data', persistentVolumeClaim: { claimName: 'data' } }],
  },
};

t.test('a PV counts for a PVC only when its claimRef names that PVC', async (t) => {
  const cases: [string, V1PersistentVolume, boolean][] = [
    ['bound to another namespace', pv({ namespace: 'victim', name: 'data', uid: 'uid-victim' }), false],
    ['bound to another name', pv({ namespace: 'attacker', name: 'other' }), false],
    ['bound to an earlier claim of that name', pv({ namespace: 'attacker', name: 'data', uid: 'uid-old' }), false],
    ['not bound yet (no claimRef)', pv(undefined), false],
    ['pre-bound by the admin (no uid)', pv({ namespace: 'attacker', name: 'data' }), true],
    ['bound to this claim', pv({ namespace: 'attacker', name: 'data', uid: 'uid-attacker' }), true],
  ];
  for (const [what, volume, ours] of cases) {
    const view = new ObjectView([volume, attackerPvc, secret]);

    // The controller's Secret copy follows the same rule: no copy of a PV that is not the PVC's.
    t.same(
      sourceSecretOf(attackerPvc, view),
      ours ? { name: 'victim-secret', namespace: 'kube-system' } : undefined,
      `${what}: ${ours ? 'the PV Secret is copied' : 'no Secret copy'}`,
    );
    if (ours) {
      t.equal(resolveVolumes(pod, 'attacker', view).length, 1, `${what}: resolved`);
    } else {
      let denied: unknown;
      try {
        resolveVolumes(pod, 'attacker', view);
      } catch (err) {
        denied = err;
      }
      t.ok(denied instanceof DenyError && denied.code === 'pv-not-bound', `${what}: the pod is denied [pv-not-bound]`);
    }
  }
});

t.test(
  'the pod UID variable has one definition, the injector’s, in every container that mounts the volume',
  async (t) => {
    const hostile: V1Container = {
      name: 'app',
      image: 'busybox',
      env: [
        { name: POD_UID_ENV, value: 'victim-uid-1' },
        { name: 'KEEP', value: 'kept' },
        { name: POD_UID_ENV, value: 'victim-uid-2' },
      ],
      envFrom: [{ prefix: 'JUICEFS_', configMapRef: { name: 'has-POD_UID' } }],
      volumeMounts: [
        { name: 'a', mountPath: '/a' },
        { name: 'b', mountPath: '/b' },
      ],
    };
    const input: V1Pod = {
      metadata: { name: 'app', namespace: 'team-a' },
      spec: {
        initContainers: [{ ...structuredClone(hostile), name: 'init' }],
        containers: [hostile],
        volumes: [
          { name: 'a', persistentVolumeClaim: { claimName: 'a' } },
          { name: 'b', persistentVolumeClaim: { claimName: 'b' } },
        ],
      },
    };
    const volume = (name: string): ResolvedVolume => ({
      source: {
        pvName: `pv-${name}`,
        subdir: name,
        readOnly: false,
        attributes: {},
        mountOptions: [],
        secret: { name: `s-${name}`, keys: ['metaurl'], envNames: [], formatFlags: [] },
      },
      binding: {
        podVolumeName: name,
        pvc: { name, namespace: 'team-a', labels: {}, annotations: {}, storageClassName: '' },
      },
    });
    const out = injectPod(input, [volume('a'), volume('b')], { mode: 'sidecar', config: parseGlobalConfig('') });
    if (out.kind !== 'injected') throw new Error('not injected');
    for (const c of [...out.pod.spec!.containers, ...(out.pod.spec!.initContainers ?? [])]) {
      if (c.name.startsWith('jfs-')) continue;
      const defs = (c.env ?? []).filter((e) => e.name === POD_UID_ENV);
      t.same(
        defs,
        [{ name: POD_UID_ENV, valueFrom: { fieldRef: { fieldPath: 'metadata.uid' } } }],
        `${c.name}: one definition, the pod's own uid (an env entry, so it also wins over envFrom)`,
      );
      t.same(
        (c.env ?? []).map((e) => e.name),
        [POD_UID_ENV, 'KEEP'],
        `${c.name}: the user's other env stays`,
      );
      for (const m of c.volumeMounts ?? []) t.match(m.subPathExpr, new RegExp(`^\\$\\(${POD_UID_ENV}\\)/${m.name}$`));
    }
    t.equal(out.warnings.filter((w) => w.includes(POD_UID_ENV)).length, 2, 'one warning per container, not per volume');
  },
);
