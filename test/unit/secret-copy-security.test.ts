// Issue 11 class 5 (ADR 0010), the pure half: which Secrets may back a volume, and the controller's seal that the
// webhook checks before it lets a pod reference a per-PVC copy.
import type { KubernetesObject, V1PersistentVolumeClaim, V1Pod, V1Secret } from '@kubernetes/client-node';
import t from 'tap';
import { DenyError } from '../../src/contract/deny.js';
import { SECRET_COPY_SEAL_ANNOTATION } from '../../src/contract/keys.js';
import {
  secretCopyName,
  secretCopySeal,
  unfitSourceSecret,
  verifySecretCopySeal,
  type SealSubject,
} from '../../src/contract/secret-copy.js';
import { ObjectView } from '../../src/resolve/object-view.js';
import { resolveVolumes } from '../../src/resolve/resolve.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');

t.test('only an Opaque Secret with metaurl or token, never the webhook certificate, may back a volume', async (t) => {
  const at = { namespace: 'juicefs-system', name: 'jfs' };
  t.equal(unfitSourceSecret({ ...at, type: 'Opaque', data: { metaurl: b64('redis://r') } }), undefined);
  t.equal(unfitSourceSecret({ ...at, data: { token: b64('t') } }), undefined, 'EE token, type unset');
  t.match(unfitSourceSecret({ ...at, type: 'Opaque', data: { foo: b64('bar') } }), /neither "metaurl" nor "token"/);
  t.match(unfitSourceSecret({ ...at, type: 'Opaque' }), /neither/, 'no data at all');
  t.match(
    unfitSourceSecret({ ...at, type: 'kubernetes.io/service-account-token', data: { token: b64('jwt') } }),
    /type kubernetes\.io\/service-account-token/,
    'a ServiceAccount token has a "token" key too',
  );
  t.match(unfitSourceSecret({ ...at, type: 'kubernetes.io/tls', data: { metaurl: b64('x') } }), /type/);
  t.match(
    unfitSourceSecret({ ...at, name: 'jfs-sidecar-webhook-certs', data: { metaurl: b64('x') } }),
    /certificate Secret/,
  );
});

t.test('a seal verifies only for the PVC, copy and source it was made for', async (t) => {
  const subject: SealSubject = {
    sourceUid: '0f6c7d1e-source',
    namespace: 'tenant',
    pvcName: 'data',
    pvcUid: 'pvc-uid-1',
    copyName: secretCopyName('data'),
  };
  const seal = secretCopySeal(subject, 'copy-uid-1');
  t.equal(verifySecretCopySeal(seal, subject), 'copy-uid-1');
  t.equal(verifySecretCopySeal(undefined, subject), undefined);
  t.equal(verifySecretCopySeal('', subject), undefined);
  t.equal(verifySecretCopySeal('copy-uid-1', subject), undefined, 'no MAC');
  t.equal(verifySecretCopySeal(seal.replace('copy-uid-1', 'user-uid'), subject), undefined, 'another copy uid');
  t.equal(verifySecretCopySeal(seal, { ...subject, pvcUid: 'pvc-uid-2' }), undefined, 'another PVC');
  t.equal(verifySecretCopySeal(seal, { ...subject, namespace: 'other' }), undefined, 'another namespace');
  t.equal(
    verifySecretCopySeal(secretCopySeal({ ...subject, sourceUid: '' }, 'user-uid'), subject),
    undefined,
    'a user who does not know the source uid cannot make one',
  );
  t.equal(verifySecretCopySeal(seal, { ...subject, sourceUid: '' }), undefined, 'never without a source uid');
});

// The webhook's view asks for seals; the offline view does not.
class SealedView extends ObjectView {
  readonly requireSecretCopySeal = true;
}

function objects(opts: { secret?: Partial<V1Secret>; seal?: (pvc: V1PersistentVolumeClaim) => string }) {
  const secret: V1Secret = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'jfs', namespace: 'juicefs-system', uid: 'source-uid' },
    type: 'Opaque',
    data: { name: b64('vol'), metaurl: b64('redis://admin@r/1') },
    ...opts.secret,
  };
  const pvc: V1PersistentVolumeClaim = {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name: 'data', namespace: 'tenant', uid: 'pvc-uid' },
    spec: { volumeName: 'pv-data', accessModes: ['ReadWriteMany'] },
  };
  if (opts.seal) pvc.metadata!.annotations = { [SECRET_COPY_SEAL_ANNOTATION]: opts.seal(pvc) };
  const pv = {
    apiVersion: 'v1',
    kind: 'PersistentVolume',
    metadata: { name: 'pv-data' },
    spec: {
      // Bound to this claim: only then is it the PVC's PV (issue 11, class 1).
      claimRef: { namespace: 'tenant', name: 'data', uid: 'pvc-uid' },
      csi: {
        driver: 'csi.juicefs.com',
        volumeHandle: 'pv-data',
        nodePublishSecretRef: { name: secret.metadata!.name!, namespace: secret.metadata!.namespace! },
      },
    },
  };
  return [secret, pvc, pv] as KubernetesObject[];
}

const pod: V1Pod = {
  metadata: { name: 'app', namespace: 'tenant' },
  spec: {
    containers: [{ name: 'app', image: 'busybox' }],
    volumes: [{ name: 'data', persistentVolumeClaim: { claimName: 'data' } }],
  },
};

function denial(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    if (err instanceof DenyError) return `${err.code}: ${err.message}`;
    throw err;
  }
}

t.test('the webhook refers to a copy only once the controller has sealed it', async (t) => {
  const sealFor =
    (copyUid: string, sourceUid = 'source-uid') =>
    (pvc: V1PersistentVolumeClaim) =>
      secretCopySeal(
        {
          sourceUid,
          namespace: 'tenant',
          pvcName: 'data',
          pvcUid: pvc.metadata!.uid!,
          copyName: secretCopyName('data'),
        },
        copyUid,
      );
  t.match(
    denial(() => resolveVolumes(pod, 'tenant', new SealedView(objects({})))),
    /^secret-copy-not-ready: /,
  );
  t.match(
    denial(() => resolveVolumes(pod, 'tenant', new SealedView(objects({ seal: () => 'forged.0123456789abcdef' })))),
    /^secret-copy-not-ready: /,
    'a seal the user wrote',
  );
  t.match(
    denial(() => resolveVolumes(pod, 'tenant', new SealedView(objects({ seal: sealFor('u', 'guessed-uid') })))),
    /^secret-copy-not-ready: /,
    'a seal keyed by anything but the source uid',
  );
  const [resolved] = resolveVolumes(pod, 'tenant', new SealedView(objects({ seal: sealFor('copy-uid') })));
  t.equal(resolved.source.secret.name, 'juicefs-data-secret', 'sealed: the sidecar references the copy');
  t.equal(
    denial(() => resolveVolumes(pod, 'tenant', new ObjectView(objects({})))),
    undefined,
    'offline: no seal',
  );
});

t.test('a PV naming a Secret that is not a JuiceFS Secret is denied, sealed or not', async (t) => {
  const cases: Array<[string, Partial<V1Secret>]> = [
    ['the webhook certificate', { metadata: { name: 'jfs-sidecar-webhook-certs', namespace: 'juicefs-system' } }],
    ['no metaurl/token', { data: { 'tls.crt': b64('x'), 'tls.key': b64('y') } }],
    ['a ServiceAccount token', { type: 'kubernetes.io/service-account-token', data: { token: b64('jwt') } }],
  ];
  for (const [what, secret] of cases) {
    t.match(
      denial(() => resolveVolumes(pod, 'tenant', new ObjectView(objects({ secret })))),
      /^invalid-secret: /,
      what,
    );
    t.match(
      denial(() => resolveVolumes(pod, 'tenant', new SealedView(objects({ secret })))),
      /^invalid-secret: /,
      what,
    );
  }
});
