// The selected mountPodPatch entries of one volume, merged as the reference merges them (a later entry's field
// replaces an earlier one's; volumes add up, the first of a name stays), their templates, and how the merged fields
// shape the client container and the Mount Pod. Which field applies where is ENTRY_FIELDS' (src/config/schema.ts).
import type {
  V1Container,
  V1Lifecycle,
  V1PodDNSConfig,
  V1PodSpec,
  V1Probe,
  V1ResourceRequirements,
  V1Volume,
  V1VolumeDevice,
  V1VolumeMount,
} from '@kubernetes/client-node';
import type { MountPodPatch, ResourcePercentages } from '../config/schema.js';
import { DenyError } from '../contract/deny.js';
import { canonicalQuantity, parseQuantity } from '../contract/quantity.js';

/** The fields of the entries that shape the client's container and pod (images, resources, env, options aside). */
export interface ClientPatch {
  imagePullPolicy?: string;
  hostNetwork?: boolean;
  hostPID?: boolean;
  dnsPolicy?: string;
  dnsConfig?: V1PodDNSConfig;
  hostnameKey?: 'podname' | 'volumeid';
  livenessProbe?: V1Probe;
  readinessProbe?: V1Probe;
  startupProbe?: V1Probe;
  lifecycle?: V1Lifecycle;
  terminationGracePeriodSeconds?: number;
  volumes?: V1Volume[];
  volumeMounts?: V1VolumeMount[];
  volumeDevices?: V1VolumeDevice[];
  initContainers?: V1Container[];
  resourcePercentages?: ResourcePercentages;
}

const REPLACED = [
  'imagePullPolicy',
  'hostNetwork',
  'hostPID',
  'dnsPolicy',
  'dnsConfig',
  'hostnameKey',
  'livenessProbe',
  'readinessProbe',
  'startupProbe',
  'lifecycle',
  'terminationGracePeriodSeconds',
  'initContainers',
  'resourcePercentages',
] as const;

/** The entries' client fields, merged in order. */
export function mergeClientPatch(entries: MountPodPatch[]): ClientPatch {
  const out: ClientPatch = {};
  for (const entry of entries) {
    for (const key of REPLACED) if (entry[key] !== undefined) (out as Record<string, unknown>)[key] = entry[key];
    const names = new Set((out.volumes ?? []).map((v) => v.name));
    const added = (entry.volumes ?? []).filter((v) => !names.has(v.name));
    if (added.length) out.volumes = [...(out.volumes ?? []), ...structuredClone(added)];
    const accepted = new Set(added.map((v) => v.name));
    const mounts = (entry.volumeMounts ?? []).filter((m) => accepted.has(m.name));
    if (mounts.length) out.volumeMounts = [...(out.volumeMounts ?? []), ...structuredClone(mounts)];
    const devices = (entry.volumeDevices ?? []).filter((d) => accepted.has(d.name));
    if (devices.length) out.volumeDevices = [...(out.volumeDevices ?? []), ...structuredClone(devices)];
  }
  return out;
}

/** Values of the reference's templates for one volume (`${MOUNT_POINT}` is the builder's: it knows the mount point). */
export interface TemplateValues {
  VOLUME_ID: string;
  VOLUME_NAME: string;
  SUB_PATH: string;
  MOUNT_POINT?: string;
}

/**
 * A value of the volume's (PV name, Secret `name`, subPath) may reach an exec command or env, where a shell or
 * kubelet's $(VAR) expansion would read it: only plain path characters are put in.
 */
const SAFE_VALUE = /^[A-Za-z0-9._/:@+=,-]*$/;

/** `value` with the templates replaced in every string; DenyError when a used value is not plain. */
export function renderTemplates<T>(value: T, values: TemplateValues, where: string): T {
  const used = new Set<string>();
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string')
      return v.replace(/\$\{(MOUNT_POINT|VOLUME_ID|VOLUME_NAME|SUB_PATH)\}/g, (whole, name: keyof TemplateValues) => {
        const text = values[name];
        if (text === undefined) return whole;
        used.add(name);
        if (name !== 'MOUNT_POINT' && !SAFE_VALUE.test(text))
          throw new DenyError(
            'invalid-pv',
            `${where}: \${${name}} is "${text}", which holds a character a shell or kubelet's $(VAR) expansion would read; mountPodPatch templates take plain path characters only`,
          );
        return text;
      });
    if (Array.isArray(v)) return v.map(walk);
    if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    return v;
  };
  return walk(value) as T;
}

/**
 * Runs an exec probe's or hook's argv with each `${MOUNT_POINT}` in it replaced by $JFS_MOUNT_POINT: a sidecar's mount
 * point holds $(JUICEFS_POD_UID), which kubelet expands in env but not in probes or hooks. A constant that reads env;
 * the admin's arguments are passed as they are, never through the shell.
 */
export const MOUNT_POINT_EXEC_SCRIPT = `n=$#
while [ "$n" -gt 0 ]; do
  a=$1; shift; b=
  while :; do
    case "$a" in *'\${MOUNT_POINT}'*) b="$b\${a%%'\${MOUNT_POINT}'*}$JFS_MOUNT_POINT"; a=\${a#*'\${MOUNT_POINT}'} ;; *) break ;; esac
  done
  set -- "$@" "$b$a"; n=$((n-1))
done
exec "$@"`;

function withMountPointEnv<T extends { exec?: { command?: string[] } }>(handler: T | undefined): T | undefined {
  const command = handler?.exec?.command;
  if (!handler || !command?.some((a) => a.includes('${MOUNT_POINT}'))) return handler;
  return { ...handler, exec: { ...handler.exec, command: ['sh', '-c', MOUNT_POINT_EXEC_SCRIPT, 'sh', ...command] } };
}

/** The patch's probes and hooks with `${MOUNT_POINT}` read from env at run time (see MOUNT_POINT_EXEC_SCRIPT). */
export function mountPointFromEnv(patch: ClientPatch): ClientPatch {
  const lifecycle = patch.lifecycle && {
    ...patch.lifecycle,
    ...(patch.lifecycle.postStart && { postStart: withMountPointEnv(patch.lifecycle.postStart) }),
    ...(patch.lifecycle.preStop && { preStop: withMountPointEnv(patch.lifecycle.preStop) }),
  };
  return {
    ...patch,
    ...(patch.livenessProbe && { livenessProbe: withMountPointEnv(patch.livenessProbe) }),
    ...(patch.readinessProbe && { readinessProbe: withMountPointEnv(patch.readinessProbe) }),
    ...(patch.startupProbe && { startupProbe: withMountPointEnv(patch.startupProbe) }),
    ...(lifecycle && { lifecycle }),
  };
}

/** The container's fields from the patch: pull policy, probes, hooks, extra mounts. `own` hooks and probes win. */
export function applyToContainer(
  container: V1Container,
  patch: ClientPatch,
  opts: { keepStartupProbe: boolean; volumeName: (name: string) => string },
): void {
  if (patch.imagePullPolicy) container.imagePullPolicy = patch.imagePullPolicy;
  if (patch.livenessProbe) container.livenessProbe = patch.livenessProbe;
  if (patch.readinessProbe) container.readinessProbe = patch.readinessProbe;
  if (patch.startupProbe && !opts.keepStartupProbe) container.startupProbe = patch.startupProbe;
  if (patch.lifecycle) container.lifecycle = { ...patch.lifecycle, ...container.lifecycle };
  if (patch.volumeMounts?.length)
    container.volumeMounts = [
      ...(container.volumeMounts ?? []),
      ...patch.volumeMounts.map((m) => ({ ...m, name: opts.volumeName(m.name) })),
    ];
  if (patch.volumeDevices?.length)
    container.volumeDevices = [
      ...(container.volumeDevices ?? []),
      ...patch.volumeDevices.map((d) => ({ ...d, name: opts.volumeName(d.name) })),
    ];
}

/** The patch's volumes as the pod holds them. */
export function patchVolumes(patch: ClientPatch, volumeName: (name: string) => string): V1Volume[] {
  return (patch.volumes ?? []).map((v) => ({ ...v, name: volumeName(v.name) }));
}

/** The Mount Pod's pod-level fields from the patch. */
export function applyToMountPod(spec: V1PodSpec, patch: ClientPatch, hostname: string): void {
  if (patch.hostNetwork !== undefined) spec.hostNetwork = patch.hostNetwork;
  if (patch.hostPID !== undefined) spec.hostPID = patch.hostPID;
  if (patch.dnsPolicy) spec.dnsPolicy = patch.dnsPolicy;
  if (patch.dnsConfig) spec.dnsConfig = patch.dnsConfig;
  if (patch.terminationGracePeriodSeconds !== undefined)
    spec.terminationGracePeriodSeconds = patch.terminationGracePeriodSeconds;
  if (patch.hostnameKey === 'volumeid') spec.hostname = hostname;
  if (patch.initContainers?.length) spec.initContainers = [...(spec.initContainers ?? []), ...patch.initContainers];
  const volumes = patchVolumes(patch, (n) => n);
  if (volumes.length) spec.volumes = [...(spec.volumes ?? []), ...volumes];
}

/** The reference's floor of a computed limit. */
const DEFAULT_MIN_LIMITS: Record<string, string> = { cpu: '100m', memory: '300Mi' };
const MIB = 1024 * 1024;

function toNumber(text: string | undefined): number | undefined {
  const q = text === undefined ? undefined : parseQuantity(text);
  return q ? Number(q.num) / Number(q.den) : undefined;
}

/** A share of an app amount, as the reference rounds it: CPU up to a millicore, memory up to a MiB. */
function share(resource: string, amount: number, percent: number): { text: string; value: number } {
  if (resource === 'cpu') {
    const milli = Math.ceil((amount * 1000 * percent) / 100);
    return { text: `${milli}m`, value: milli / 1000 };
  }
  const mib = Math.ceil(Math.ceil((amount * percent) / 100) / MIB);
  return { text: `${mib}Mi`, value: mib * MIB };
}

/**
 * Sidecar requests and limits as shares of the app containers' (`app`, summed over the containers that mount the
 * volume); a resource the apps do not set is left as it is. Limits are at least minLimits.
 */
export function percentageLayer(
  percentages: ResourcePercentages | undefined,
  app: V1ResourceRequirements | undefined,
): { requests: Record<string, string>; limits: Record<string, string> } {
  const out = { requests: {} as Record<string, string>, limits: {} as Record<string, string> };
  if (!percentages || !app) return out;
  const floors = { ...DEFAULT_MIN_LIMITS, ...percentages.minLimits };
  for (const list of ['requests', 'limits'] as const) {
    for (const [resource, percent] of Object.entries(percentages[list] ?? {})) {
      const amount = toNumber(app[list]?.[resource]);
      if (amount === undefined) continue;
      let v = share(resource, amount, percent);
      const floor = list === 'limits' ? floors[resource] : undefined;
      const floorValue = toNumber(floor);
      if (floor && floorValue !== undefined && v.value < floorValue) v = { text: floor, value: floorValue };
      // As the API server stores it (1000m → 1): the pod read back equals what was planned.
      out[list][resource] = canonicalQuantity(v.text) ?? v.text;
    }
  }
  return out;
}
