// The diagnosis: walks pod → PVC → PV / StorageClass → Secret → sidecar or Mount Pod → mount state over what a
// shell gathered, and says what is wrong and what to do next, in plain words. Pure (src/diagnose/types.ts).
import type {
  CoreV1Event,
  V1ContainerStatus,
  V1PersistentVolume,
  V1PersistentVolumeClaim,
  V1Pod,
  V1StorageClass,
} from '@kubernetes/client-node';
import {
  CSI_DRIVER_NAME,
  LABEL_DISABLE_INJECTION,
  LABEL_ENABLE_INJECTION,
  LABEL_ENABLE_SERVERLESS_INJECTION,
  SC_SECRET_PARAMS,
  SECRET_KEYS,
} from '../contract/keys.js';
import {
  claimNamesOf,
  clientVersion,
  describeAppPod,
  isInjected,
  isJuiceFSClass,
  isJuiceFSPv,
  mountPodsOfPod,
  mountPodsOfPv,
  podStatusText,
  sidecarContainers,
  type ClientInfo,
} from './inventory.js';
import type { ChainStep, ContainerLog, Diagnosis, Finding, FindingCode, Gathered, Severity, Subject } from './types.js';

/** A client or a mount that is still coming up is "not ready" only after this long. */
const SLOW_MS = 60_000;
const SEVERITY_ORDER: Record<Severity, number> = { error: 0, warning: 1, info: 2 };

const QUOTA_RE = /quota exceeded|disk quota|EDQUOT|no space left on device/i;
const TRANSPORT_RE = /transport endpoint is not connected/i;

/** Why a client's log says it failed, in plain words; undefined when the lines do not tell. */
function clientLogHint(lines: string[]): string | undefined {
  const text = lines.join('\n');
  if (/not formatted|load setting|no volume found|unable to open database/i.test(text))
    return 'no formatted JuiceFS volume is found at the metaurl of its Secret (wrong metaurl, or the volume was never formatted)';
  if (/connection refused|no such host|i\/o timeout|dial tcp|network is unreachable/i.test(text))
    return 'it cannot reach the metadata engine or the object storage (address, port, network policy or DNS)';
  if (/access denied|authentication|invalid access key|signature|forbidden/i.test(text))
    return 'the object storage refuses its credentials (access-key / secret-key of the Secret)';
  if (/fuse: device not found|\/dev\/fuse|operation not permitted/i.test(text))
    return 'it cannot use FUSE on this node (/dev/fuse missing, or the container is not privileged)';
  if (/OOMKilled|out of memory/i.test(text))
    return 'it runs out of memory (raise juicefs/mount-memory-limit, or lower the cache settings)';
  return undefined;
}

interface Ctx {
  g: Gathered;
  chain: ChainStep[];
  findings: Finding[];
  seenSteps: Set<string>;
  logs: ContainerLog[];
}

const subjectKey = (s: Subject) => `${s.kind}/${s.namespace ?? ''}/${s.name}`;
const nsName = (ns: string | undefined, name: string) => (ns ? `${ns}/${name}` : name);

function step(ctx: Ctx, subject: Subject, status: string, ok: boolean, details: string[] = []): void {
  const k = subjectKey(subject);
  if (ctx.seenSteps.has(k)) return;
  ctx.seenSteps.add(k);
  ctx.chain.push({ subject, status, ok, details });
}

function find(
  ctx: Ctx,
  code: FindingCode,
  severity: Severity,
  subject: Subject,
  cause: string,
  next: string,
  evidence: string[] = [],
): void {
  if (ctx.findings.some((f) => f.code === code && subjectKey(f.subject) === subjectKey(subject))) return;
  ctx.findings.push({ code, severity, subject, cause, next, evidence: [...new Set(evidence)] });
}

const has = (ctx: Ctx, ...codes: FindingCode[]) => ctx.findings.some((f) => codes.includes(f.code));

/** Events about one object, newest last, as `Reason: message (xN)`. */
function eventsOf(ctx: Ctx, kind: string, namespace: string | undefined, name: string): CoreV1Event[] {
  return ctx.g.events
    .filter(
      (e) =>
        e.involvedObject.kind === kind &&
        e.involvedObject.name === name &&
        (namespace === undefined || (e.involvedObject.namespace ?? '') === namespace),
    )
    .sort((a, b) => eventTime(a) - eventTime(b));
}

const eventTime = (e: CoreV1Event) =>
  new Date(e.lastTimestamp ?? e.eventTime ?? e.firstTimestamp ?? e.metadata.creationTimestamp ?? 0).getTime();
const eventLine = (e: CoreV1Event) =>
  `${e.reason ?? 'Event'}: ${e.message ?? ''}${(e.count ?? 1) > 1 ? ` (x${e.count})` : ''}`;

const findPvc = (g: Gathered, ns: string, name: string) =>
  g.pvcs.find((p) => p.metadata?.namespace === ns && p.metadata?.name === name);
const findPv = (g: Gathered, name: string) => g.pvs.find((p) => p.metadata?.name === name);
const findClass = (g: Gathered, name: string | undefined) =>
  name === undefined ? undefined : g.storageClasses.find((s) => s.metadata?.name === name);
const findSecret = (g: Gathered, ns: string, name: string) =>
  g.secrets.find((s) => s.namespace === ns && s.name === name);

/** The class a PVC gets: its own, or the cluster's default when it names none (storageClassName absent). */
function classOf(g: Gathered, pvc: V1PersistentVolumeClaim): { name?: string; sc?: V1StorageClass } {
  const own = pvc.spec?.storageClassName;
  if (own !== undefined) return { name: own, sc: findClass(g, own) };
  const def = g.storageClasses.find(
    (s) => s.metadata?.annotations?.['storageclass.kubernetes.io/is-default-class'] === 'true',
  );
  return { name: def?.metadata?.name, sc: def };
}

function checkSecret(ctx: Ctx, ref: { namespace: string; name: string } | undefined, of: string): void {
  if (!ref) return;
  const subject: Subject = { kind: 'Secret', namespace: ref.namespace, name: ref.name };
  const s = findSecret(ctx.g, ref.namespace, ref.name);
  if (!s || s.state === 'unknown') {
    step(ctx, subject, 'not readable', true, [s?.reason ?? 'not gathered', `the Secret of ${of}`]);
    return;
  }
  if (s.state === 'missing') {
    step(ctx, subject, 'missing', false, [`the Secret of ${of}`]);
    find(
      ctx,
      'secret-missing',
      'error',
      subject,
      `Secret ${ref.namespace}/${ref.name}, which ${of} names for the volume's credentials, does not exist.`,
      `Create it (keys name and metaurl, plus storage, bucket, access-key, secret-key for a new volume): ` +
        `kubectl -n ${ref.namespace} create secret generic ${ref.name} --from-literal=name=<volume> ` +
        `--from-literal=metaurl=<metaurl>; or fix the Secret's name in ${of}. Pods waiting for it then start by themselves.`,
    );
    return;
  }
  const keys = s.keys ?? [];
  const usable = keys.includes(SECRET_KEYS.metaurl) || keys.includes(SECRET_KEYS.token);
  step(ctx, subject, 'present', usable, [`keys: ${keys.join(', ') || '(none)'}`]);
  if (!usable)
    find(
      ctx,
      'secret-incomplete',
      'warning',
      subject,
      `Secret ${ref.namespace}/${ref.name} has neither metaurl nor token: the client cannot find the volume.`,
      `Add the metaurl (community edition) or token (enterprise) key: kubectl -n ${ref.namespace} edit secret ${ref.name}.`,
      [`keys: ${keys.join(', ') || '(none)'}`],
    );
}

function pvSecretRef(pv: V1PersistentVolume) {
  const ref = pv.spec?.csi?.nodePublishSecretRef;
  return ref?.name ? { name: ref.name, namespace: ref.namespace ?? 'default' } : undefined;
}

function classSecretRef(sc: V1StorageClass) {
  const p = sc.parameters ?? {};
  const name = p[SC_SECRET_PARAMS.nodePublishName] ?? p[SC_SECRET_PARAMS.provisionerName];
  const namespace = p[SC_SECRET_PARAMS.nodePublishNamespace] ?? p[SC_SECRET_PARAMS.provisionerNamespace];
  // A template (${pvc.name}) is csi-provisioner's to render: nothing to look up before the PV exists.
  if (!name || !namespace || name.includes('${') || namespace.includes('${')) return undefined;
  return { name, namespace };
}

/** The PV of a claim, or its class when unbound; pods waiting on it are passed for the WaitForFirstConsumer rule. */
function walkClaim(ctx: Ctx, ns: string, claim: string, pod: V1Pod | undefined): void {
  const g = ctx.g;
  const subject: Subject = { kind: 'PersistentVolumeClaim', namespace: ns, name: claim };
  const pvc = findPvc(g, ns, claim);
  if (!pvc) {
    step(ctx, subject, 'missing', false);
    find(
      ctx,
      'pvc-missing',
      'error',
      subject,
      `PersistentVolumeClaim ${ns}/${claim}${pod ? `, which pod ${pod.metadata?.name} mounts,` : ''} does not exist.`,
      `Create it (see examples/10-pvc.yaml), or fix claimName in the pod.`,
    );
    return;
  }
  const phase = pvc.status?.phase ?? 'Pending';
  const pvcEvents = eventsOf(ctx, 'PersistentVolumeClaim', ns, claim).map(eventLine);
  const { name: className, sc } = classOf(g, pvc);
  const classSubject: Subject = { kind: 'StorageClass', name: className ?? '(none)' };
  if (phase === 'Bound' && pvc.spec?.volumeName) {
    const pv = findPv(g, pvc.spec.volumeName);
    step(ctx, subject, 'Bound', true, [`volume ${pvc.spec.volumeName}`, ...(className ? [`class ${className}`] : [])]);
    if (!pv) {
      const pvSubject: Subject = { kind: 'PersistentVolume', name: pvc.spec.volumeName };
      step(ctx, pvSubject, 'missing', false);
      find(
        ctx,
        'pv-missing',
        'error',
        pvSubject,
        `PersistentVolumeClaim ${ns}/${claim} is bound to PersistentVolume ${pvc.spec.volumeName}, which no longer exists.`,
        `Re-create the PV (a static PV: from its manifest), or delete and re-create the PVC to provision a new one.`,
      );
      return;
    }
    walkPv(ctx, pv);
    return;
  }
  if (phase === 'Lost') {
    step(ctx, subject, 'Lost', false, pvcEvents);
    find(
      ctx,
      'pvc-lost',
      'error',
      subject,
      `PersistentVolumeClaim ${ns}/${claim} is Lost: its PersistentVolume ${pvc.spec?.volumeName ?? ''} is gone.`,
      `Re-create the PV with the same name and claimRef, or delete and re-create the PVC.`,
      pvcEvents,
    );
    return;
  }
  // Pending: who would bind it?
  step(ctx, subject, phase, false, [className ? `class ${className}` : 'no class', ...pvcEvents]);
  if (!className && !pvc.spec?.volumeName) {
    find(
      ctx,
      'pvc-not-juicefs',
      'error',
      subject,
      `PersistentVolumeClaim ${ns}/${claim} is Pending: it names no StorageClass and no PersistentVolume, and the ` +
        `cluster has no default class, so nothing will ever bind it.`,
      `Set spec.storageClassName to a JuiceFS StorageClass (provisioner ${CSI_DRIVER_NAME}, e.g. juicefs-sc), or ` +
        `spec.volumeName to a JuiceFS PV; a PVC's class cannot change, so delete and re-create it.`,
      pvcEvents,
    );
    return;
  }
  if (pvc.spec?.volumeName) {
    const pv = findPv(g, pvc.spec.volumeName);
    if (pv) walkPv(ctx, pv);
    else {
      find(
        ctx,
        'pv-missing',
        'error',
        { kind: 'PersistentVolume', name: pvc.spec.volumeName },
        `PersistentVolumeClaim ${ns}/${claim} waits for PersistentVolume ${pvc.spec.volumeName}, which does not exist.`,
        `Create the static PV (see examples/static/), or remove spec.volumeName from the PVC (re-create it).`,
        pvcEvents,
      );
      return;
    }
  }
  if (className && !sc && !pvc.spec?.volumeName) {
    step(ctx, classSubject, 'missing', false);
    find(
      ctx,
      'storageclass-missing',
      'error',
      classSubject,
      `PersistentVolumeClaim ${ns}/${claim} is Pending: its StorageClass ${className} does not exist.`,
      `Create the StorageClass (an admin: see manifests/storageclass-example.yaml), or re-create the PVC with an ` +
        `existing JuiceFS class (kubectl get storageclass).`,
      pvcEvents,
    );
    return;
  }
  if (!sc) return;
  const juicefs = isJuiceFSClass(sc);
  step(ctx, classSubject, juicefs ? 'JuiceFS' : 'not JuiceFS', juicefs, [
    `provisioner ${sc.provisioner}`,
    `volumeBindingMode ${sc.volumeBindingMode ?? 'Immediate'}`,
  ]);
  if (!juicefs) {
    find(
      ctx,
      'pvc-not-juicefs',
      'error',
      subject,
      `PersistentVolumeClaim ${ns}/${claim} is Pending and is not a JuiceFS volume: its StorageClass ${className} ` +
        `belongs to provisioner ${sc.provisioner}, not ${CSI_DRIVER_NAME}` +
        `${pvcEvents.length ? '' : ', and nothing has tried to provision it'}.`,
      `If it should be JuiceFS, re-create the PVC with storageClassName set to a JuiceFS class (kubectl get ` +
        `storageclass; provisioner ${CSI_DRIVER_NAME}); otherwise see why ${sc.provisioner} does not provision it ` +
        `(kubectl -n ${ns} describe pvc ${claim}).`,
      pvcEvents,
    );
    return;
  }
  checkSecret(ctx, classSecretRef(sc), `StorageClass ${className}`);
  const waitForConsumer = sc.volumeBindingMode === 'WaitForFirstConsumer';
  const scheduled = pod?.spec?.nodeName !== undefined;
  const selectedNode = pvc.metadata?.annotations?.['volume.kubernetes.io/selected-node'];
  if (waitForConsumer && !scheduled && !selectedNode) {
    find(
      ctx,
      'pvc-waiting-for-consumer',
      'info',
      subject,
      `PersistentVolumeClaim ${ns}/${claim} waits for its first pod to be scheduled (WaitForFirstConsumer): normal.`,
      pod
        ? `It binds once pod ${pod.metadata?.name} is scheduled; if the pod stays Pending, see its scheduling message.`
        : `It binds once a pod that uses it is scheduled.`,
      pvcEvents,
    );
    return;
  }
  const failed = eventsOf(ctx, 'PersistentVolumeClaim', ns, claim).filter((e) => e.type === 'Warning');
  find(
    ctx,
    'pvc-pending',
    'error',
    subject,
    `PersistentVolumeClaim ${ns}/${claim} of JuiceFS StorageClass ${className} is still Pending: no PV was ` +
      `provisioned for it${failed.length ? ' (provisioning failed)' : ''}.`,
    `See the provisioning error in kubectl -n ${ns} describe pvc ${claim}; then the controller's logs: ` +
      `kubectl -n juicefs-system logs deploy/jfs-sidecar-controller --all-containers --tail=50 (the class's Secret, ` +
      `the metadata engine and the object storage must be reachable from the controller).`,
    failed.map(eventLine),
  );
}

function walkPv(ctx: Ctx, pv: V1PersistentVolume): void {
  const name = pv.metadata?.name ?? '';
  const subject: Subject = { kind: 'PersistentVolume', name };
  const juicefs = isJuiceFSPv(pv);
  step(ctx, subject, pv.status?.phase ?? 'Unknown', juicefs && pv.status?.phase !== 'Failed', [
    juicefs ? `driver ${CSI_DRIVER_NAME}, volumeHandle ${pv.spec?.csi?.volumeHandle}` : 'not a JuiceFS volume',
    ...(pv.spec?.claimRef ? [`claim ${pv.spec.claimRef.namespace}/${pv.spec.claimRef.name}`] : []),
  ]);
  if (!juicefs) return;
  checkSecret(ctx, pvSecretRef(pv), `PersistentVolume ${name}`);
}

function statusOf(pod: V1Pod, container: string): V1ContainerStatus | undefined {
  return [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])].find(
    (s) => s.name === container,
  );
}

function logsOf(ctx: Ctx, ns: string, pod: string, container: string): ContainerLog[] {
  return ctx.g.logs.filter((l) => l.namespace === ns && l.pod === pod && l.container === container);
}

function keepLogs(ctx: Ctx, logs: ContainerLog[]): void {
  for (const l of logs) if (!ctx.logs.includes(l)) ctx.logs.push(l);
}

/** One JuiceFS client container, in the app pod (sidecar) or in a Mount Pod. */
function walkClient(ctx: Ctx, host: V1Pod, c: ClientInfo, kind: 'sidecar' | 'Mount Pod'): void {
  const ns = host.metadata?.namespace ?? '';
  const podName = host.metadata?.name ?? '';
  const subject: Subject = { kind: 'Container', namespace: ns, name: `${podName}/${c.container}` };
  const s = statusOf(host, c.container);
  const logs = logsOf(ctx, ns, podName, c.container);
  const lines = logs.flatMap((l) => l.lines);
  const where = kind === 'sidecar' ? `sidecar ${c.container} of pod ${ns}/${podName}` : `Mount Pod ${ns}/${podName}`;
  const logCmd = `kubectl -n ${ns} logs ${podName} -c ${c.container}`;
  step(ctx, subject, c.status, c.ready, [
    `${kind}, image ${c.image}`,
    `restarts ${c.restarts}`,
    ...(c.pvc ? [`serves PVC ${c.pvc}`] : []),
  ]);
  const waiting = s?.state?.waiting;
  const lastExit = s?.lastState?.terminated ?? s?.state?.terminated;
  const stateLine = (st: V1ContainerStatus | undefined) =>
    [
      st?.state?.waiting ? `waiting: ${st.state.waiting.reason ?? ''} ${st.state.waiting.message ?? ''}`.trim() : '',
      st?.lastState?.terminated
        ? `last exit ${st.lastState.terminated.exitCode} (${st.lastState.terminated.reason ?? ''}) at ${String(st.lastState.terminated.finishedAt ?? '')}`
        : '',
    ].filter(Boolean);
  if (waiting && /ErrImagePull|ImagePullBackOff|InvalidImageName|ErrImageNeverPull/.test(waiting.reason ?? '')) {
    find(
      ctx,
      'client-image-pull',
      'error',
      subject,
      `The JuiceFS client image ${c.image} of ${where} cannot be pulled (${waiting.reason}).`,
      `Check the image name and the node's access to its registry; the image comes from juicefs/mount-image of the ` +
        `PV / StorageClass or the ConfigMap's mount image (kubectl -n ${ns} describe pod ${podName}).`,
      stateLine(s),
    );
    return;
  }
  if (waiting?.reason === 'CreateContainerConfigError' && /secret/i.test(waiting.message ?? '')) {
    const secret = /secret "([^"]+)" not found/.exec(waiting.message ?? '')?.[1];
    find(
      ctx,
      'secret-missing',
      'error',
      secret ? { kind: 'Secret', namespace: ns, name: secret } : subject,
      `The ${where} cannot start: ${waiting.message}. ` +
        `${kind === 'sidecar' ? "It reads the controller's copy of the volume's Secret in the pod's namespace." : ''}`.trim(),
      kind === 'sidecar'
        ? `The controller makes that copy from the PV's / StorageClass's Secret: check the source Secret exists, and ` +
            `the controller's logs (kubectl -n juicefs-system logs deploy/jfs-sidecar-controller --all-containers).`
        : `Create the Secret, or fix its name in the PV / StorageClass.`,
      stateLine(s),
    );
    return;
  }
  const crashing =
    waiting?.reason === 'CrashLoopBackOff' ||
    (s?.state?.terminated !== undefined && s.state.terminated.exitCode !== 0) ||
    waiting?.reason === 'RunContainerError';
  if (crashing) {
    keepLogs(ctx, logs);
    const hint = clientLogHint(lines);
    find(
      ctx,
      'client-crashed',
      'error',
      subject,
      `The JuiceFS client (${where}) keeps crashing (${waiting?.reason ?? 'exited'}` +
        `${lastExit ? `, exit code ${lastExit.exitCode}` : ''}, ${c.restarts} restarts)` +
        `${hint ? `: ${hint}` : ''}. The app cannot use the volume until it runs.`,
      `Read why in its log: ${logCmd} --previous. ` +
        (hint
          ? 'Fix the Secret (kubectl -n <ns> edit secret …) or the PV / StorageClass settings; the client is retried by itself.'
          : 'Check the Secret (metaurl, storage, bucket, keys) and the mount options of the PV / StorageClass.'),
      [...stateLine(s), ...lines.slice(-5)],
    );
    return;
  }
  if (c.restarts > 0 && lastExit && lastExit.exitCode !== 0) {
    const finished = new Date(lastExit.finishedAt ?? 0).getTime();
    if (Date.parse(ctx.g.now) - finished < 10 * 60_000) {
      keepLogs(ctx, logs);
      find(
        ctx,
        'client-crashed',
        c.ready ? 'warning' : 'error',
        subject,
        `The JuiceFS client (${where}) crashed ${Math.round((Date.parse(ctx.g.now) - finished) / 1000)} s ago ` +
          `(exit code ${lastExit.exitCode}, ${c.restarts} restarts)${c.ready ? ' and is running again' : ''}.`,
        `Read why in ${logCmd} --previous; files the app had open at the crash may fail and need reopening.`,
        [...stateLine(s), ...lines.slice(-5)],
      );
    }
  }
  if (s?.state?.running && !c.ready) {
    const since = Date.parse(ctx.g.now) - new Date(s.state.running.startedAt ?? ctx.g.now).getTime();
    if (since > SLOW_MS)
      find(
        ctx,
        'mount-not-ready',
        'error',
        subject,
        `The JuiceFS client (${where}) has run for ${Math.round(since / 1000)} s but its mount point is not ready.`,
        `See what it is waiting for in ${logCmd} (the metadata engine, the object storage, a format step).`,
        lines.slice(-5),
      );
  }
}

function checkLogsFor(ctx: Ctx, pod: V1Pod, subjectOf: (container: string) => Subject): void {
  const ns = pod.metadata?.namespace ?? '';
  const name = pod.metadata?.name ?? '';
  for (const l of ctx.g.logs.filter((x) => x.namespace === ns && x.pod === name)) {
    const quota = l.lines.filter((x) => QUOTA_RE.test(x));
    if (quota.length > 0) {
      keepLogs(ctx, [l]);
      find(
        ctx,
        'quota-exceeded',
        'error',
        subjectOf(l.container),
        `Writes to the JuiceFS volume fail: the volume or its directory quota is full (container ${l.container} logs it).`,
        `Raise the quota: expand the PVC (kubectl -n ${ns} edit pvc <name>, spec.resources.requests.storage; the ` +
          `controller sets it as the directory's quota), or free space; see the usage with kubectl jfs debug pod ${name}.`,
        quota.slice(-3),
      );
    }
    const transport = l.lines.filter((x) => TRANSPORT_RE.test(x));
    if (transport.length > 0) transportFinding(ctx, pod, subjectOf(l.container), transport.slice(-3));
  }
}

function transportFinding(ctx: Ctx, pod: V1Pod, subject: Subject, evidence: string[]): void {
  const ns = pod.metadata?.namespace ?? '';
  const name = pod.metadata?.name ?? '';
  find(
    ctx,
    'transport-endpoint-not-connected',
    'error',
    subject,
    `The app sees "Transport endpoint is not connected": its FUSE mount lost the JuiceFS client behind it (the ` +
      `client crashed or was restarted and the mount was not handed back to this container).`,
    `If the client is Running again, restart the app (kubectl -n ${ns} delete pod ${name}, its controller re-creates ` +
      `it); an app mount without mountPropagation HostToContainer never sees a recovered mount. Then find why the ` +
      `client died (kubectl jfs debug pod ${name} shows its last log lines).`,
    evidence,
  );
}

/** df's last line → filesystem, size, used, use%; undefined when it is no df table. */
function parseDf(output: string): { fs: string; usePct: number; line: string } | undefined {
  const lines = output.trim().split('\n');
  const last = lines[lines.length - 1] ?? '';
  const cols = last.trim().split(/\s+/);
  if (lines.length < 2 || cols.length < 6) return undefined;
  const pct = /^(\d+)%$/.exec(cols[4]);
  return pct ? { fs: cols[0], usePct: Number(pct[1]), line: last.trim() } : undefined;
}

function walkMountChecks(ctx: Ctx, pod: V1Pod): void {
  const ns = pod.metadata?.namespace ?? '';
  const name = pod.metadata?.name ?? '';
  for (const m of ctx.g.mountChecks.filter((x) => x.namespace === ns && x.pod === name)) {
    const subject: Subject = { kind: 'Container', namespace: ns, name: `${name}/${m.container}` };
    const mountSubject: Subject = { kind: 'Container', namespace: ns, name: `${name}/${m.container}:${m.path}` };
    if (TRANSPORT_RE.test(m.output)) {
      step(ctx, mountSubject, 'broken', false, [m.output.trim()]);
      transportFinding(ctx, pod, subject, [m.output.trim()]);
      continue;
    }
    const df = m.ok ? parseDf(m.output) : undefined;
    if (!df) {
      step(ctx, mountSubject, 'not checked', true, [m.output.trim().split('\n').slice(-1)[0] ?? '']);
      continue;
    }
    const isJuiceFS = /^JuiceFS:/i.test(df.fs);
    step(ctx, mountSubject, isJuiceFS ? 'mounted' : 'not mounted', isJuiceFS && df.usePct < 100, [df.line]);
    if (!isJuiceFS)
      find(
        ctx,
        'mount-not-ready',
        'error',
        subject,
        `Container ${m.container} sees no JuiceFS at ${m.path} (df shows ${df.fs}): the volume is not mounted there.`,
        pod.spec?.containers.some((c) => (c.volumeMounts ?? []).some((v) => v.mountPropagation === 'HostToContainer'))
          ? `Check the client's log (kubectl jfs debug pod ${name}); restarting the pod mounts it again.`
          : `Restart the pod once its client runs (kubectl -n ${ns} delete pod ${name}).`,
        [df.line],
      );
    else if (df.usePct >= 100)
      find(
        ctx,
        'quota-exceeded',
        'error',
        subject,
        `The JuiceFS volume at ${m.path} is full (${df.usePct}% used): writes fail with "Disk quota exceeded".`,
        `Raise the quota by expanding the PVC (spec.resources.requests.storage; the controller sets it as the ` +
          `directory's quota), or free space.`,
        [df.line],
      );
  }
}

function walkPod(ctx: Ctx, pod: V1Pod): void {
  const g = ctx.g;
  const ns = pod.metadata?.namespace ?? '';
  const name = pod.metadata?.name ?? '';
  const podSubject: Subject = { kind: 'Pod', namespace: ns, name };
  const info = describeAppPod(pod, g);
  const status = podStatusText(pod);
  const nsObj = g.namespaces.find((n) => n.metadata?.name === ns);
  const labels = nsObj?.metadata?.labels ?? {};
  const nsMode =
    labels[LABEL_ENABLE_INJECTION] === 'true'
      ? 'sidecar'
      : labels[LABEL_ENABLE_SERVERLESS_INJECTION] === 'true'
        ? 'serverless'
        : 'not labelled';
  step(ctx, podSubject, status, status === 'Running' || status === 'Completed', [
    info?.mode === 'none'
      ? 'mode: no sidecar and no Mount Pod serve it yet'
      : `mode ${info?.mode ?? 'no JuiceFS volume'}`,
    ...(pod.spec?.nodeName ? [`node ${pod.spec.nodeName}`] : ['not scheduled']),
  ]);
  step(ctx, { kind: 'Namespace', name: ns }, nsMode, true, [
    nsMode === 'not labelled' ? 'no injection: Mount Pod mode (node plugin)' : `injection: ${nsMode}`,
  ]);

  const injected = isInjected(pod);
  const claims = injected ? (info?.pvcs ?? []) : claimNamesOf(pod);
  for (const c of claims) walkClaim(ctx, ns, c, pod);
  const jfsClaims = injected ? claims : (info?.pvcs ?? []);
  const podEvents = eventsOf(ctx, 'Pod', ns, name);
  const warnings = podEvents.filter((e) => e.type === 'Warning').map(eventLine);

  // Injection or Mount Pod: who serves the JuiceFS volumes of this pod?
  if (!injected && jfsClaims.length > 0) {
    const mps = mountPodsOfPod(pod, g.mountPods);
    const optedOut = pod.metadata?.labels?.[LABEL_DISABLE_INJECTION] === 'true';
    if (optedOut)
      find(
        ctx,
        'injection-opted-out',
        'info',
        podSubject,
        `Pod ${ns}/${name} opts out of sidecar injection (label ${LABEL_DISABLE_INJECTION}: "true"): Mount Pod mode.`,
        `Nothing to do, unless it should get a sidecar: remove the label and re-create the pod.`,
      );
    const driverMissingEvent = warnings.filter((w) => /not found in the list of registered CSI drivers/i.test(w));
    const noDriver =
      (g.csiDrivers !== undefined && !g.csiDrivers.includes(CSI_DRIVER_NAME)) || driverMissingEvent.length;
    if (mps.length === 0 && nsMode !== 'not labelled' && !optedOut) {
      const ours = (g.webhookConfigs ?? []).filter((w) =>
        (w.webhooks ?? []).some((h) => {
          const sel = h.namespaceSelector?.matchLabels ?? {};
          return sel[LABEL_ENABLE_INJECTION] === 'true' || sel[LABEL_ENABLE_SERVERLESS_INJECTION] === 'true';
        }),
      );
      if (g.webhookConfigs !== undefined && ours.length === 0)
        find(
          ctx,
          'webhook-config-missing',
          'error',
          { kind: 'MutatingWebhookConfiguration', name: 'jfs-sidecar-webhook' },
          `Namespace ${ns} is labelled for injection but the cluster has no JuiceFS MutatingWebhookConfiguration, so ` +
            `the API server never calls the webhook and pod ${name} got no sidecar.`,
          `Install the webhook (an admin: kubectl apply -k manifests/), then re-create the pod ` +
            `(kubectl -n ${ns} delete pod ${name}; a Deployment re-creates it).`,
        );
      else
        find(
          ctx,
          'webhook-not-called',
          'error',
          podSubject,
          `Pod ${ns}/${name} uses JuiceFS PVCs in a namespace labelled for injection, yet has no sidecar: it was ` +
            `created before the label or before the webhook was installed (the webhook only sees pods when they are created).`,
          `Re-create the pod (kubectl -n ${ns} delete pod ${name}; a Deployment re-creates it); if it again has no ` +
            `jfs-mount container, check the webhook: kubectl -n juicefs-system logs deploy/jfs-sidecar-webhook.`,
          warnings,
        );
    } else if (mps.length === 0 && noDriver && !optedOut)
      find(
        ctx,
        'namespace-not-labelled',
        'error',
        { kind: 'Namespace', name: ns },
        `Pod ${ns}/${name} uses JuiceFS PVCs but nothing mounts them: namespace ${ns} is not labelled for sidecar ` +
          `injection, and no JuiceFS node plugin runs on its node for Mount Pod mode (no CSI driver ${CSI_DRIVER_NAME} registered).`,
        `For sidecar mode: kubectl label namespace ${ns} ${LABEL_ENABLE_INJECTION}=true, then re-create the pod ` +
          `(kubectl -n ${ns} delete pod ${name}). For Mount Pod mode an admin installs the node plugin: kubectl apply -k manifests/node/.`,
        driverMissingEvent,
      );
    else if (mps.length === 0 && pod.spec?.nodeName && !has(ctx, 'secret-missing', 'pvc-pending', 'pv-missing')) {
      const mountEvents = warnings.filter((w) => /FailedMount|MountVolume/i.test(w));
      const transport = mountEvents.filter((w) => TRANSPORT_RE.test(w));
      if (transport.length) transportFinding(ctx, pod, podSubject, transport);
      else if (status !== 'Running')
        find(
          ctx,
          'mount-pod-missing',
          'error',
          podSubject,
          `Pod ${ns}/${name} waits for its JuiceFS volume (Mount Pod mode), and no Mount Pod serves it` +
            `${mountEvents.length ? ': the node plugin reports a mount failure' : ' yet'}.`,
          `Read the mount error in kubectl -n ${ns} describe pod ${name}; then the node plugin's log on node ` +
            `${pod.spec.nodeName}: kubectl -n juicefs-system logs ds/jfs-sidecar-node --tail=50.`,
          mountEvents,
        );
    }
    for (const mp of mps) walkMountPod(ctx, mp);
  }

  // The sidecars.
  if (injected && info) for (const c of info.clients) walkClient(ctx, pod, c, 'sidecar');
  if (injected && info?.pvcs.length === 0 && sidecarContainers(pod).length > 0)
    step(ctx, { kind: 'PersistentVolumeClaim', namespace: ns, name: '(unknown)' }, 'not traced', true, [
      'the sidecar names no PVC this view can see',
    ]);

  // The mount from the app's side, then what the logs and events say.
  walkMountChecks(ctx, pod);
  checkLogsFor(ctx, pod, (container) => ({ kind: 'Container', namespace: ns, name: `${name}/${container}` }));
  const transportEvents = warnings.filter((w) => TRANSPORT_RE.test(w));
  if (transportEvents.length) transportFinding(ctx, pod, podSubject, transportEvents);
  if (warnings.some((w) => QUOTA_RE.test(w)))
    find(
      ctx,
      'quota-exceeded',
      'error',
      podSubject,
      `The JuiceFS volume of pod ${ns}/${name} is full: its quota is exceeded.`,
      `Expand the PVC (spec.resources.requests.storage) or free space.`,
      warnings.filter((w) => QUOTA_RE.test(w)),
    );

  // Apps that crash with the mount fine.
  const clientNames = new Set(sidecarContainers(pod).map((c) => c.name));
  for (const s of pod.status?.containerStatuses ?? []) {
    if (clientNames.has(s.name) || s.state?.waiting?.reason !== 'CrashLoopBackOff') continue;
    const logs = logsOf(ctx, ns, name, s.name);
    keepLogs(ctx, logs);
    if (!has(ctx, 'client-crashed', 'transport-endpoint-not-connected', 'quota-exceeded', 'mount-not-ready'))
      find(
        ctx,
        'app-crashing',
        'warning',
        { kind: 'Container', namespace: ns, name: `${name}/${s.name}` },
        `The app container ${s.name} itself keeps crashing (exit code ${s.lastState?.terminated?.exitCode ?? '?'}); ` +
          `its JuiceFS volumes look fine.`,
        `Read its log: kubectl -n ${ns} logs ${name} -c ${s.name} --previous.`,
        logs.flatMap((l) => l.lines).slice(-5),
      );
  }

  // Not scheduled, for a reason the PVCs do not explain.
  const sched = (pod.status?.conditions ?? []).find((c) => c.type === 'PodScheduled');
  if (sched?.status === 'False' && !has(ctx, 'pvc-not-juicefs', 'pvc-pending', 'storageclass-missing', 'pvc-missing'))
    find(
      ctx,
      'pod-unschedulable',
      'warning',
      podSubject,
      `Pod ${ns}/${name} is not scheduled: ${sched.message ?? sched.reason ?? 'no node fits'}.`,
      `Free or add capacity, or lower the requests; a sidecar adds its own (juicefs/mount-cpu-request, ` +
        `juicefs/mount-memory-request of the PV / StorageClass).`,
      [sched.message ?? ''],
    );
}

function walkMountPod(ctx: Ctx, mp: V1Pod): void {
  const ns = mp.metadata?.namespace ?? '';
  const name = mp.metadata?.name ?? '';
  const status = podStatusText(mp);
  const subject: Subject = { kind: 'Pod', namespace: ns, name };
  step(ctx, subject, status, status === 'Running', [
    'Mount Pod',
    ...(mp.spec?.nodeName ? [`node ${mp.spec.nodeName}`] : []),
  ]);
  const sched = (mp.status?.conditions ?? []).find((c) => c.type === 'PodScheduled');
  const started = (mp.status?.containerStatuses ?? []).some(
    (s) => s.state?.running || s.state?.terminated || s.lastState?.terminated || (s.restartCount ?? 0) > 0,
  );
  if (mp.status?.phase === 'Pending' && !started) {
    const events = eventsOf(ctx, 'Pod', ns, name)
      .filter((e) => e.type === 'Warning')
      .map(eventLine);
    const pull = (mp.status?.containerStatuses ?? []).find((s) =>
      /ErrImagePull|ImagePullBackOff/.test(s.state?.waiting?.reason ?? ''),
    );
    if (!pull) {
      find(
        ctx,
        'mount-pod-pending',
        'error',
        subject,
        `Mount Pod ${ns}/${name} is Pending` +
          `${sched?.status === 'False' ? `: it cannot be scheduled (${sched.message ?? sched.reason})` : ''}` +
          `, so the app's volume is not mounted.`,
        `Lower the Mount Pod's requests (juicefs/mount-cpu-request, juicefs/mount-memory-request on the PV / ` +
          `StorageClass, or mountPodPatch in the ConfigMap) or free capacity on the node; see kubectl -n ${ns} describe pod ${name}.`,
        [...(sched?.message ? [sched.message] : []), ...events],
      );
      return;
    }
  }
  const c = (mp.spec?.containers ?? [])[0];
  if (!c) return;
  walkClient(ctx, mp, clientOfMountPod(mp), 'Mount Pod');
  checkLogsFor(ctx, mp, (container) => ({ kind: 'Container', namespace: ns, name: `${name}/${container}` }));
}

/** A Mount Pod's own client container, read like a sidecar's. */
function clientOfMountPod(mp: V1Pod): ClientInfo {
  const c = (mp.spec?.containers ?? [])[0];
  const s = statusOf(mp, c?.name ?? '');
  return {
    namespace: mp.metadata?.namespace ?? '',
    pod: mp.metadata?.name ?? '',
    container: c?.name ?? '',
    image: c?.image ?? '',
    version: clientVersion(c?.image ?? '', s?.imageID),
    status: s?.state?.waiting?.reason ?? (s?.state?.running ? 'Running' : (s?.state?.terminated?.reason ?? 'Waiting')),
    ready: s?.ready ?? false,
    restarts: s?.restartCount ?? 0,
  };
}

/** Pods denied at admission leave no pod, only their controller's FailedCreate events with the webhook's words. */
function deniedCreates(ctx: Ctx, ns: string, podName: string): void {
  const denied = ctx.g.events.filter(
    (e) =>
      (e.involvedObject.namespace ?? '') === ns &&
      e.reason === 'FailedCreate' &&
      /denied the request/i.test(e.message ?? '') &&
      /juicefs|jfs/i.test(e.message ?? '') &&
      (podName.startsWith(e.involvedObject.name ?? '\0') || (e.message ?? '').includes(podName)),
  );
  for (const e of denied) {
    const msg = e.message ?? '';
    const secret = /Secret (\S+)\/(\S+) \(of ([^)]+)\) not found/.exec(msg);
    const owner = `${e.involvedObject.kind} ${ns}/${e.involvedObject.name}`;
    if (secret)
      find(
        ctx,
        'secret-missing',
        'error',
        { kind: 'Secret', namespace: secret[1], name: secret[2] },
        `The webhook refuses the pods of ${owner}: Secret ${secret[1]}/${secret[2]}, which ${secret[3]} names, does not exist.`,
        `Create the Secret (keys name and metaurl at least) in ${secret[1]}, or fix its name in ${secret[3]}; ` +
          `${e.involvedObject.kind} then creates the pod by itself.`,
        [eventLine(e)],
      );
    else
      find(
        ctx,
        'admission-denied',
        'error',
        { kind: 'Pod', namespace: ns, name: podName },
        `The JuiceFS webhook refuses the pods of ${owner}: ${msg.replace(/^.*denied the request:\s*/i, '')}`,
        `Fix what the message names; ${e.involvedObject.kind} retries by itself.`,
        [eventLine(e)],
      );
  }
}

function sortFindings(fs: Finding[]): Finding[] {
  return fs
    .map((f, i) => ({ f, i }))
    .sort((a, b) => SEVERITY_ORDER[a.f.severity] - SEVERITY_ORDER[b.f.severity] || a.i - b.i)
    .map(({ f }) => f);
}

/** The diagnosis of one pod, PVC or PV from what was gathered for it. */
export function diagnose(g: Gathered): Diagnosis {
  const ctx: Ctx = { g, chain: [], findings: [], seenSteps: new Set(), logs: [] };
  const { kind, namespace = '', name } = g.target;
  const label = `${kind} ${nsName(g.target.namespace, name)}`;
  if (kind === 'pod') {
    const pod = g.pods.find((p) => p.metadata?.namespace === namespace && p.metadata?.name === name);
    if (pod) walkPod(ctx, pod);
    else {
      step(ctx, { kind: 'Pod', namespace, name }, 'missing', false);
      deniedCreates(ctx, namespace, name);
      if (!has(ctx, 'secret-missing', 'admission-denied'))
        find(
          ctx,
          'not-found',
          'error',
          { kind: 'Pod', namespace, name },
          `Pod ${namespace}/${name} does not exist.`,
          `List the pods that use JuiceFS with kubectl jfs pods -n ${namespace}; if a Deployment or Job should have ` +
            `made it, kubectl -n ${namespace} describe it: the webhook may have refused the pod.`,
        );
    }
  } else if (kind === 'pvc') {
    walkClaim(ctx, namespace, name, undefined);
    if (!findPvc(g, namespace, name)) {
      ctx.findings = ctx.findings.filter((f) => f.code !== 'pvc-missing');
      find(
        ctx,
        'not-found',
        'error',
        { kind: 'PersistentVolumeClaim', namespace, name },
        `PersistentVolumeClaim ${namespace}/${name} does not exist.`,
        `List them with kubectl jfs pvc -n ${namespace}.`,
      );
    }
    for (const p of g.pods) walkPod(ctx, p);
  } else {
    const pv = findPv(g, name);
    if (!pv) {
      step(ctx, { kind: 'PersistentVolume', name }, 'missing', false);
      find(
        ctx,
        'not-found',
        'error',
        { kind: 'PersistentVolume', name },
        `PersistentVolume ${name} does not exist.`,
        `List them with kubectl jfs pv.`,
      );
    } else {
      walkPv(ctx, pv);
      const ref = pv.spec?.claimRef;
      if (ref?.name && ref.namespace) walkClaim(ctx, ref.namespace, ref.name, undefined);
      for (const mp of mountPodsOfPv(name, g.mountPods)) walkMountPod(ctx, mp);
      for (const p of g.pods) walkPod(ctx, p);
    }
  }
  const findings = sortFindings(ctx.findings);
  const problems = findings.filter((f) => f.severity !== 'info');
  const healthy = problems.length === 0;
  return {
    target: g.target,
    chain: ctx.chain,
    findings,
    healthy,
    summary: healthy
      ? `${label}: no problem found${kind === 'pod' && g.pods.length ? ' (its JuiceFS volumes are served)' : ''}.`
      : `${label}: ${problems[0].cause}`,
    logs: ctx.logs,
  };
}
