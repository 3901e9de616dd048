// The credential broker's decision (ADR 0010), pure: a TokenReview result, the pod the token is bound to, the PVC
// asked for and the cluster's view in; allow (with the Secret to answer from) or a typed refusal out. The shell
// (./credentials-broker.ts) gathers the inputs and answers.
//
// What it proves before it answers: the token is valid for the broker's audience and bound to a pod that still
// exists (same uid, same ServiceAccount); that pod shares no process namespace; every container that can read the
// token or the credentials (mounts the token volume, or a volume a token-mounting container mounts) is exactly a
// container the injector makes for this pod's volumes today (re-derived with the same pure injector, compared on
// everything that decides what code runs in it); and the PVC asked for is one of those volumes, bound to its PV by
// claimRef and in broker mode. A pod the user wrote by hand (done label, own projected token) fails the comparison.
import type {
  V1Container,
  V1PersistentVolumeClaim,
  V1Pod,
  V1Probe,
  V1Volume,
  V1VolumeMount,
} from '@kubernetes/client-node';
import { CREDENTIALS_AUDIENCE, LABEL_DISABLE_INJECTION, LABEL_INJECTION_DONE } from '../contract/keys.js';
import { DenyError } from '../contract/deny.js';
import { injectPod } from '../inject/inject.js';
import type { InjectMode, InjectOptions } from '../inject/types.js';
import { fetchedSlot, type BrokerClientOptions } from '../mount/credentials.js';
import { resolveVolumes, sourceSecretOf, type ClusterView, type SecretRef } from '../resolve/resolve.js';

export type BrokerDenyCode =
  | 'unauthenticated'
  | 'wrong-audience'
  | 'not-pod-bound'
  | 'pod-not-found'
  | 'pod-terminating'
  | 'shared-process'
  | 'not-injected'
  | 'not-the-pods-volume'
  | 'not-derivable'
  | 'foreign-container'
  | 'not-broker-mode';

/** What the broker needs of a TokenReview's status. */
export interface TokenReviewResult {
  authenticated?: boolean;
  audiences?: string[];
  error?: string;
  user?: { username?: string; extra?: Record<string, string[]> };
}

/** The pod a token is bound to, as the token says (a bound ServiceAccount token's extra). */
export interface TokenPod {
  namespace: string;
  serviceAccount: string;
  name: string;
  uid: string;
}

export type Decision =
  | { allow: true; secret: SecretRef; pvc: V1PersistentVolumeClaim }
  | { allow: false; code: BrokerDenyCode; message: string };

const deny = (code: BrokerDenyCode, message: string): Decision => ({ allow: false, code, message });

const POD_NAME_EXTRA = 'authentication.kubernetes.io/pod-name';
const POD_UID_EXTRA = 'authentication.kubernetes.io/pod-uid';
const SA_PREFIX = 'system:serviceaccount:';

/** The token's pod, or the refusal: valid, of the broker's audience, a ServiceAccount's, bound to one pod. */
export function tokenPod(review: TokenReviewResult, audience = CREDENTIALS_AUDIENCE): TokenPod | Decision {
  if (review.authenticated !== true)
    return deny('unauthenticated', `the token is not valid${review.error ? `: ${review.error}` : ''}`);
  if (!(review.audiences ?? []).includes(audience))
    return deny('wrong-audience', `the token is not for audience ${audience}`);
  const username = review.user?.username ?? '';
  const parts = username.startsWith(SA_PREFIX) ? username.slice(SA_PREFIX.length).split(':') : [];
  const name = review.user?.extra?.[POD_NAME_EXTRA];
  const uid = review.user?.extra?.[POD_UID_EXTRA];
  if (parts.length !== 2 || name?.length !== 1 || uid?.length !== 1)
    return deny(
      'not-pod-bound',
      `the token of ${username || 'an unknown user'} is not a ServiceAccount token bound to a pod`,
    );
  return { namespace: parts[0], serviceAccount: parts[1], name: name[0], uid: uid[0] };
}

/** The broker's own settings: what the webhook injects with, which the controller is configured with too. */
export interface BrokerDecisionOptions extends Omit<InjectOptions, 'mode' | 'broker'> {
  broker: BrokerClientOptions;
  /**
   * CA bundles the webhook injected before the last rotation of a self-managed broker certificate: a pod admitted
   * then is still the injector's (the CA's PEM is in its fetch step's env).
   */
  previousCaPems?: string[];
}

type AnyContainer = Pick<
  V1Container,
  'name' | 'image' | 'command' | 'args' | 'env' | 'envFrom' | 'workingDir' | 'volumeMounts' | 'securityContext'
> &
  Pick<V1Container, 'lifecycle' | 'startupProbe' | 'readinessProbe' | 'livenessProbe'>;

function allContainers(pod: V1Pod): AnyContainer[] {
  return [
    ...(pod.spec?.initContainers ?? []),
    ...(pod.spec?.containers ?? []),
    ...(pod.spec?.ephemeralContainers ?? []),
  ];
}

function isTokenVolume(v: V1Volume): boolean {
  return v.projected?.sources?.some((s) => s.serviceAccountToken?.audience === CREDENTIALS_AUDIENCE) === true;
}

/** A volume's definition without its name, with the API server's defaults taken out. */
function volumeDefinition(v: V1Volume | undefined): string {
  if (!v) return 'missing';
  const { name: _name, ...rest } = structuredClone(v);
  if (rest.hostPath && !rest.hostPath.type) delete rest.hostPath.type;
  return JSON.stringify(rest, Object.keys(flatKeys(rest)).sort());
}

/** Every key at any depth (for a canonical JSON.stringify). */
function flatKeys(value: unknown, out: Record<string, true> = {}): Record<string, true> {
  if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (!Array.isArray(value)) out[k] = true;
      flatKeys(v, out);
    }
  }
  return out;
}

/**
 * The ServiceAccount admission plugin's own mount of the pod's API token, which it adds to every container (the
 * injector's too) unless the pod opts out: not the injector's, not the user's, read-only, never compared.
 */
function isServiceAccountAutomount(m: V1VolumeMount, v: V1Volume | undefined): boolean {
  return (
    m.mountPath === SA_AUTOMOUNT_PATH &&
    m.readOnly === true &&
    v?.name.startsWith('kube-api-access-') === true &&
    v.projected !== undefined &&
    !isTokenVolume(v)
  );
}
const SA_AUTOMOUNT_PATH = '/var/run/secrets/kubernetes.io/serviceaccount';

const execOf = (p: V1Probe | undefined) => p?.exec?.command ?? (p ? 'non-exec' : undefined);

/**
 * What decides the code that runs in a container and what it can reach: image, command, args, env, working
 * directory, security context, the commands of its hooks and probes, and its mounts by the definition of the volume
 * (names are the NameRegistry's, which differ with the user's own names). Not resources (the user may tune them).
 */
function projection(c: AnyContainer, volumes: V1Volume[]): string {
  const byName = new Map(volumes.map((v) => [v.name, v]));
  const env = (c.env ?? []).map((e) => {
    const copy = structuredClone(e);
    if (copy.valueFrom?.fieldRef?.apiVersion === 'v1') delete copy.valueFrom.fieldRef.apiVersion;
    return copy;
  });
  const mounts = (c.volumeMounts ?? [])
    .filter((m) => !isServiceAccountAutomount(m, byName.get(m.name)))
    .map((m) => ({
      volume: volumeDefinition(byName.get(m.name)),
      mountPath: m.mountPath,
      readOnly: m.readOnly === true,
      subPath: m.subPath ?? '',
      subPathExpr: m.subPathExpr ?? '',
      mountPropagation: m.mountPropagation ?? 'None',
    }))
    .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
  const shape = {
    image: c.image,
    command: c.command ?? null,
    args: c.args ?? null,
    env,
    envFrom: c.envFrom ?? [],
    workingDir: c.workingDir ?? null,
    securityContext: c.securityContext ?? null,
    postStart: c.lifecycle?.postStart ? (c.lifecycle.postStart.exec?.command ?? 'non-exec') : null,
    preStop: c.lifecycle?.preStop ? (c.lifecycle.preStop.exec?.command ?? 'non-exec') : null,
    probes: [execOf(c.startupProbe), execOf(c.readinessProbe), execOf(c.livenessProbe)],
    mounts,
  };
  return JSON.stringify(shape, Object.keys(flatKeys(shape)).sort());
}

/**
 * The pod the injector would make today from the pod's JuiceFS volumes (from the fetch steps' args, in their
 * order), for one mode and read-only setting; its injected containers' projections.
 */
function derivedProjections(
  pod: V1Pod,
  slots: { pvc: string; volume: string }[],
  view: ClusterView,
  options: BrokerDecisionOptions,
  mode: InjectMode,
  readOnly: boolean,
): string[] {
  const labels = { ...(pod.metadata?.labels ?? {}) };
  delete labels[LABEL_INJECTION_DONE];
  delete labels[LABEL_DISABLE_INJECTION];
  const before: V1Pod = {
    metadata: { name: pod.metadata?.name, namespace: pod.metadata?.namespace, labels },
    spec: {
      // A placeholder app: the app containers are the user's, and not compared.
      containers: [{ name: 'broker-derivation-app', image: 'none' }],
      volumes: slots.map((s) => ({ name: s.volume, persistentVolumeClaim: { claimName: s.pvc, readOnly } })),
    },
  };
  const namespace = pod.metadata?.namespace ?? '';
  const outcome = injectPod(before, resolveVolumes(before, namespace, view), { ...options, mode });
  if (outcome.kind !== 'injected') return [];
  const spec = outcome.pod.spec!;
  const added = [...(spec.initContainers ?? []), ...spec.containers].filter((c) => c.name !== 'broker-derivation-app');
  return added.map((c) => projection(c, spec.volumes ?? []));
}

/** The fields in which a projection differs from the nearest expected one (for the refusal's message). */
function closestDifference(actual: string, expected: Set<string>): string {
  const a = JSON.parse(actual) as Record<string, unknown>;
  let best: string[] | undefined;
  for (const e of expected) {
    const b = JSON.parse(e) as Record<string, unknown>;
    const fields = Object.keys(a).filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
    if (!best || fields.length < best.length) best = fields;
  }
  return best?.join(', ') || 'everything';
}

export interface DecisionInput {
  review: TokenReviewResult;
  /** The pod named by the token, read from the API server (undefined: not found). */
  pod: V1Pod | undefined;
  /** The PVC the caller asks for, in the pod's namespace. */
  pvcName: string;
  view: ClusterView;
  options: BrokerDecisionOptions;
  audience?: string;
}

/** Whether to answer with the credentials of `pvcName`'s volume: the whole rule (see the header). */
export function decideCredentials(input: DecisionInput): Decision {
  const who = tokenPod(input.review, input.audience);
  if ('allow' in who) return who;
  const { pod } = input;
  const podName = `${who.namespace}/${who.name}`;
  if (!pod || pod.metadata?.uid !== who.uid || pod.metadata?.namespace !== who.namespace)
    return deny('pod-not-found', `pod ${podName} (uid ${who.uid}) of the token does not exist`);
  if ((pod.spec?.serviceAccountName ?? 'default') !== who.serviceAccount)
    return deny('pod-not-found', `pod ${podName} does not run as ServiceAccount ${who.serviceAccount}`);
  if (pod.metadata?.deletionTimestamp) return deny('pod-terminating', `pod ${podName} is being deleted`);
  if (pod.spec?.shareProcessNamespace === true || pod.spec?.hostPID === true)
    return deny('shared-process', `pod ${podName} shares its process namespace`);
  if (pod.metadata?.labels?.[LABEL_INJECTION_DONE] !== 'true')
    return deny('not-injected', `pod ${podName} is not an injected pod`);

  const volumes = pod.spec?.volumes ?? [];
  const tokenVolumes = new Set(volumes.filter(isTokenVolume).map((v) => v.name));
  const containers = allContainers(pod);
  const fetchers = containers.filter((c) => (c.volumeMounts ?? []).some((m) => tokenVolumes.has(m.name)));
  // The steps' args name the pod's volumes; any other container with the token is caught as foreign below.
  const known = fetchers.map((c) => fetchedSlot(c)).filter((s) => s !== undefined);
  if (!known.length) return deny('not-injected', `pod ${podName} has no credentials step of the injector's`);
  if (!known.some((s) => s.pvc === input.pvcName))
    return deny(
      'not-the-pods-volume',
      `pod ${podName} has no credentials step for PersistentVolumeClaim ${input.pvcName}`,
    );

  // The token, and everything a token-mounting container can write to: every container that mounts one of these can
  // read the token or what was fetched with it. (Read-only mounts carry nothing out: the API token the ServiceAccount
  // plugin mounts into every container is one.)
  const reached = new Set([
    ...tokenVolumes,
    ...fetchers.flatMap((c) => (c.volumeMounts ?? []).filter((m) => m.readOnly !== true).map((m) => m.name)),
  ]);
  const readers = containers.filter((c) => (c.volumeMounts ?? []).some((m) => reached.has(m.name)));

  const expected = new Set<string>();
  const caPems = [input.options.broker.caPem, ...(input.options.previousCaPems ?? [])];
  // The webhook places the sidecar natively unless told (enableNativeSidecar set) or its API server is too old for
  // native sidecars (withServerVersion); the controller does not track the server's version, so with the field
  // unset both placements are the injector's.
  const config = input.options.config;
  const configs = config.nativeSidecarSet
    ? [config]
    : [true, false].map((enableNativeSidecar) => ({ ...config, enableNativeSidecar }));
  try {
    for (const [caPem, config] of [...new Set(caPems)].flatMap((ca) => configs.map((c) => [ca, c] as const))) {
      const options = { ...input.options, config, broker: { ...input.options.broker, caPem } };
      for (const mode of ['sidecar', 'serverless'] as const)
        for (const readOnly of [false, true])
          for (const p of derivedProjections(pod, known, input.view, options, mode, readOnly)) expected.add(p);
    }
  } catch (err) {
    if (err instanceof DenyError) return deny('not-derivable', `pod ${podName}: ${err.message}`);
    throw err;
  }
  const foreign = readers.find((c) => !expected.has(projection(c, volumes)));
  if (foreign)
    return deny(
      'foreign-container',
      `container ${foreign.name} of pod ${podName} can read the volume credentials and is not the injector's as it would be made now (differs in ${closestDifference(projection(foreign, volumes), expected)})`,
    );

  const pvc = input.view.getPvc(who.namespace, input.pvcName)!;
  const secret = sourceSecretOf(pvc, input.view);
  // resolveVolumes (in the derivation) checked the claimRef rule, the Secret's shape and the mode's validity.
  if (!secret) return deny('not-the-pods-volume', `PersistentVolumeClaim ${podName}: no JuiceFS volume of its own`);
  const derived = resolveVolumes(
    { spec: { containers: [], volumes: [{ name: 'v', persistentVolumeClaim: { claimName: input.pvcName } }] } },
    who.namespace,
    input.view,
  );
  if (derived[0]?.source.credentials !== 'broker')
    return deny('not-broker-mode', `PersistentVolumeClaim ${input.pvcName}: its volume is not in broker mode`);
  return { allow: true, secret, pvc };
}
