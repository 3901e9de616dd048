// The broker and the webhook agree on the sidecar's placement: the webhook falls back to classic sidecars on an API
// server without native ones (withServerVersion) when config.yaml does not set enableNativeSidecar, and the broker,
// which does not track the server's version, must accept that pod too (it denied every broker-mode pod of such a
// cluster as carrying a foreign container). Set explicitly, only the configured placement is the injector's.
import type { KubernetesObject, V1Pod } from '@kubernetes/client-node';
import t from 'tap';
import { configFromObjects } from '../../src/config/options.js';
import { withServerVersion } from '../../src/config/schema.js';
import { decideCredentials } from '../../src/controller/broker-decision.js';
import { ObjectView } from '../../src/resolve/object-view.js';
import { GOLDEN_BROKER } from '../golden/golden.js';
import { brokerObjects, brokerReview, injectedBrokerPod } from './broker-fixtures.js';

const objects = brokerObjects;
const review = brokerReview();
const injected = (objs: KubernetesObject[], config: ReturnType<typeof configFromObjects>): V1Pod =>
  injectedBrokerPod(objs, { config, broker: GOLDEN_BROKER });

const decide = (objs: KubernetesObject[], pod: V1Pod, config: ReturnType<typeof configFromObjects>) =>
  decideCredentials({
    review,
    pod,
    pvcName: 'data',
    view: new ObjectView(objs),
    options: { config, broker: GOLDEN_BROKER },
  });

t.test('unset enableNativeSidecar: a classic sidecar made for an old API server is the injector’s too', async (t) => {
  const objs = objects();
  const raw = configFromObjects(objs);
  t.notOk(raw.nativeSidecarSet, 'the golden case leaves the field unset');
  const old = withServerVersion(raw, { major: '1', minor: '27', gitVersion: 'v1.27.3' });
  t.equal(old.enableNativeSidecar, false, 'the webhook of a 1.27 server places it classic');
  const classic = injected(objs, old);
  t.notOk(
    (classic.spec!.initContainers ?? []).some((c) => c.restartPolicy === 'Always'),
    'no native sidecar in the classic pod',
  );
  const d = decide(objs, classic, raw);
  t.ok(d.allow, `classic pod allowed with the raw config${d.allow ? '' : `: ${d.message}`}`);
  const native = decide(objs, injected(objs, raw), raw);
  t.ok(native.allow, 'the native pod still allowed');
});

t.test('set explicitly: the other placement is not the injector’s', async (t) => {
  const objs = objects();
  const raw = configFromObjects(objs);
  const nativeOnly = { ...raw, enableNativeSidecar: true, nativeSidecarSet: true };
  const classicPod = injected(objs, { ...raw, enableNativeSidecar: false, nativeSidecarSet: true });
  const d = decide(objs, classicPod, nativeOnly);
  t.notOk(d.allow, 'a classic pod is refused when config.yaml says native');
  t.equal(!d.allow && d.code, 'foreign-container');
  t.ok(decide(objs, injected(objs, nativeOnly), nativeOnly).allow, 'the configured placement is allowed');
});
