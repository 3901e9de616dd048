// The diagnosis of one app pod, PVC or PV (`kubectl jfs debug`, the dashboard): what a shell gathered from the
// cluster goes in, the chain it walked and the findings come out. Pure: no I/O, no clock but the one passed in.
// The shape is shared with the dashboard; add fields and finding codes, never rename or remove them.
import type {
  CoreV1Event,
  V1MutatingWebhookConfiguration,
  V1Namespace,
  V1PersistentVolume,
  V1PersistentVolumeClaim,
  V1Pod,
  V1StorageClass,
} from '@kubernetes/client-node';

export type DebugKind = 'pod' | 'pvc' | 'pv';

export interface DebugTarget {
  kind: DebugKind;
  /** Pods and PVCs: their namespace; PVs are cluster-scoped. */
  namespace?: string;
  name: string;
}

export type SubjectKind =
  | 'Pod'
  | 'PersistentVolumeClaim'
  | 'PersistentVolume'
  | 'StorageClass'
  | 'Secret'
  | 'Namespace'
  | 'MutatingWebhookConfiguration'
  | 'CSIDriver'
  | 'Container';

/** The object a chain step or a finding is about. A container is `<pod>/<container>` in its pod's namespace. */
export interface Subject {
  kind: SubjectKind;
  namespace?: string;
  name: string;
}

/**
 * A Secret as seen by the one who asked: never its values (a diagnosis is shown to namespace users). `unknown`
 * when it could not be read (e.g. forbidden), with the reason.
 */
export interface SecretPresence {
  namespace: string;
  name: string;
  state: 'present' | 'missing' | 'unknown';
  /** The keys it holds (present only). */
  keys?: string[];
  reason?: string;
}

/** The last lines of one container's log; `previous`: of its last terminated run (kubectl logs --previous). */
export interface ContainerLog {
  namespace: string;
  pod: string;
  container: string;
  previous: boolean;
  lines: string[];
}

/**
 * What `df -P <path>` printed in an app container (through exec), for each JuiceFS mount path of the pod:
 * shows whether the volume is mounted there, whether the FUSE connection answers, and how full it is.
 */
export interface MountCheck {
  namespace: string;
  pod: string;
  container: string;
  path: string;
  /** The exec ran and df exited 0. */
  ok: boolean;
  /** stdout and stderr together. */
  output: string;
}

/** Everything a shell gathered for one target; lists may hold more than the chain needs (the core picks). */
export interface Gathered {
  target: DebugTarget;
  /** The target pod (debug pod), or the pods using the PVC / PV. */
  pods: V1Pod[];
  /** The namespaces of those pods and PVCs (labels: injection opt-in). */
  namespaces: V1Namespace[];
  pvcs: V1PersistentVolumeClaim[];
  pvs: V1PersistentVolume[];
  storageClasses: V1StorageClass[];
  secrets: SecretPresence[];
  /** Mount Pods (label app.kubernetes.io/name=juicefs-mount) that may serve them. */
  mountPods: V1Pod[];
  /** The cluster's MutatingWebhookConfigurations; undefined when they could not be read. */
  webhookConfigs?: V1MutatingWebhookConfiguration[];
  /** Names of the cluster's CSIDriver objects; undefined when they could not be read. */
  csiDrivers?: string[];
  /** Events of every object above (and the target's namespace's FailedCreate events, for a denied pod). */
  events: CoreV1Event[];
  logs: ContainerLog[];
  mountChecks: MountCheck[];
  /** "Now", for ages and for how long something has been waiting. */
  now: string;
}

export type Severity = 'error' | 'warning' | 'info';

/** Every cause the diagnosis knows; each has a unit test (test/unit/diagnose-*.test.ts). */
export type FindingCode =
  | 'not-found'
  | 'admission-denied'
  | 'pvc-missing'
  | 'pvc-pending'
  | 'pvc-waiting-for-consumer'
  | 'pvc-not-juicefs'
  | 'pvc-lost'
  | 'storageclass-missing'
  | 'pv-missing'
  | 'secret-missing'
  | 'secret-incomplete'
  | 'namespace-not-labelled'
  | 'webhook-config-missing'
  | 'webhook-not-called'
  | 'injection-opted-out'
  | 'mount-pod-missing'
  | 'mount-pod-pending'
  | 'client-crashed'
  | 'client-image-pull'
  | 'mount-not-ready'
  | 'transport-endpoint-not-connected'
  | 'quota-exceeded'
  | 'app-crashing'
  | 'pod-unschedulable';

export interface Finding {
  code: FindingCode;
  severity: Severity;
  subject: Subject;
  /** What is wrong, in plain words. */
  cause: string;
  /** What to do next (a command where there is one). */
  next: string;
  /** The lines of the cluster's own words that show it: event messages, log lines, container states. */
  evidence: string[];
}

/** How an app pod reaches its JuiceFS volumes. */
export type PodMode = 'sidecar' | 'serverless' | 'mount-pod' | 'none';

/** One step of the walk: an object, how it is, and whether that is fine. */
export interface ChainStep {
  subject: Subject;
  /** One word or two, as kubectl would print it: Bound, Pending, Running, CrashLoopBackOff, missing. */
  status: string;
  ok: boolean;
  /** More to say (the class's provisioner, the mode, the client image, the mount's df line). */
  details: string[];
}

export interface Diagnosis {
  target: DebugTarget;
  chain: ChainStep[];
  /** Errors first, then warnings, then notes. */
  findings: Finding[];
  /** No error and no warning. */
  healthy: boolean;
  /** One line: what is wrong first, or that all is well. */
  summary: string;
  /** The last log lines of the JuiceFS clients (and of crashing apps), as gathered. */
  logs: ContainerLog[];
}
