// Name of the per-PVC copy of a volume's Secret, kept by the controller in the
// PVC's namespace so that the sidecar can reference credentials with
// secretKeyRef (which cannot cross namespaces) and admission stays free of
// side effects.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import { describeClientEnv, isClientEnvName } from './client-env.js';
import {
  CREDENTIALS_CERT_SECRET_NAME,
  FORMAT_FLAG_KEY_PREFIX,
  SECRET_COPY_ENV_PREFIX,
  SECRET_KEYS,
  WEBHOOK_CERT_SECRET_NAME,
} from './keys.js';
import { dnsName, OBJECT_NAME_MAX as MAX_NAME } from './names.js';

export function secretCopyName(pvcName: string): string {
  const plain = `juicefs-${pvcName}-secret`;
  if (plain.length <= MAX_NAME) return plain;
  const hash = createHash('sha256').update(pvcName).digest('hex').slice(0, 10);
  return `juicefs-${pvcName.slice(0, MAX_NAME - 'juicefs--secret'.length - 11)}-${hash}-secret`;
}

/**
 * Name of a Mount Pod's Secret (Mount Pod mode): by volume handle and by
 * content (base64 data, as in Secret.data), so that changed credentials make a
 * new Secret and a new Mount Pod, never a change under a running one.
 */
export function mountPodSecretName(volumeId: string, data: Record<string, string>): string {
  const digest = createHash('sha256')
    .update(JSON.stringify(Object.entries(data).sort()))
    .digest('hex')
    .slice(0, 8);
  return `${dnsName(`juicefs-${volumeId}`, 230, { dots: true })}-${digest}-secret`;
}

const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;

export class SecretFormatError extends Error {
  override name = 'SecretFormatError';
}

function decode(data: Record<string, string> | undefined, key: string): string | undefined {
  const v = data?.[key];
  return v === undefined ? undefined : Buffer.from(v, 'base64').toString('utf8');
}

/** The `envs` key: a YAML/JSON map of client env vars, e.g. "{TZ: Asia/Shanghai}". */
export function parseEnvs(text: string | undefined): Record<string, string> {
  if (text === undefined || !text.trim()) return {};
  let v: unknown;
  try {
    v = parseYaml(text);
  } catch (err) {
    throw new SecretFormatError(`key "envs" is not a YAML map: ${(err as Error).message}`);
  }
  if (v === null || v === undefined) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new SecretFormatError('key "envs" is not a map');
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
    if (!ENV_NAME.test(k)) throw new SecretFormatError(`key "envs": "${k}" is not a valid env var name`);
    if (!isClientEnvName(k)) {
      throw new SecretFormatError(
        `key "envs": variable "${k}" may not be set: the privileged client takes from "envs" only variables a JuiceFS client reads (${describeClientEnv()})`,
      );
    }
    out[k] = typeof val === 'string' ? val : JSON.stringify(val);
  }
  return out;
}

/** The reference driver's older key names, read as the current ones (the old name wins, as there). */
export const SECRET_KEY_ALIASES: Readonly<Record<string, string>> = {
  accesskey: SECRET_KEYS.accessKey,
  secretkey: SECRET_KEYS.secretKey,
};

/** `juicefs format` flags a Secret may give as keys of their own, besides `format-options` (the reference's list). */
export const FORMAT_SECRET_KEYS = ['block-size', 'compress', 'trash-days', 'capacity', 'inodes', 'shards'] as const;

/** The key of a normalised Secret that holds a `juicefs format` flag's value (a flag without one: "true"). */
export function formatFlagKey(flag: string): string {
  return `${FORMAT_FLAG_KEY_PREFIX}${flag}`;
}

function normalise(
  source: Record<string, string> | undefined,
  decode: (v: string) => string,
  encode: (v: string) => string,
): Record<string, string> {
  const out: Record<string, string> = { ...(source ?? {}) };
  for (const [alias, key] of Object.entries(SECRET_KEY_ALIASES)) {
    if (out[alias] !== undefined) {
      out[key] = out[alias];
      delete out[alias];
    }
  }
  for (const key of FORMAT_SECRET_KEYS)
    if (out[key] !== undefined && decode(out[key])) out[formatFlagKey(key)] = out[key];
  for (const option of decode(out[SECRET_KEYS.formatOptions] ?? '').split(',')) {
    const text = option.trim();
    if (!text) continue;
    const eq = text.indexOf('=');
    const flag = (eq < 0 ? text : text.slice(0, eq)).trim().replace(/^--?/, '');
    out[formatFlagKey(flag)] = encode(eq < 0 ? 'true' : text.slice(eq + 1).trim());
  }
  return out;
}

/**
 * A Secret's data as the rest of the project reads it (plain text values): key aliases under their current names,
 * and every `juicefs format` flag, from its own key (FORMAT_SECRET_KEYS) or from `format-options` (which wins, as it
 * comes later on the reference's command line), under `format.<flag>`, so that each value can reach the format step
 * through env on its own: a `secret-key=` in `format-options` never appears in a pod's argv.
 */
export function normaliseSecretText(source: Record<string, string> | undefined): Record<string, string> {
  return normalise(
    source,
    (v) => v,
    (v) => v,
  );
}

/** normaliseSecretText for Secret.data (base64 values; the values it keeps keep their bytes). */
export function normaliseSecretData(data: Record<string, string> | undefined): Record<string, string> {
  return normalise(
    data,
    (v) => Buffer.from(v, 'base64').toString('utf8'),
    (v) => Buffer.from(v, 'utf8').toString('base64'),
  );
}

/**
 * The copy's data (base64, as in Secret.data): the source's keys, normalised
 * (normaliseSecretData), except `envs`, split into one key `envs.<NAME>` per
 * variable so that each can be referenced on its own.
 */
export function secretCopyData(source: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(normaliseSecretData(source))) if (k !== SECRET_KEYS.envs) out[k] = v;
  for (const [name, value] of Object.entries(parseEnvs(decode(source, SECRET_KEYS.envs)))) {
    out[`${SECRET_COPY_ENV_PREFIX}${name}`] = Buffer.from(value, 'utf8').toString('base64');
  }
  return out;
}

export interface SecretSummary {
  /** The normalised Secret's keys (normaliseSecretData), `envs` and the `format.*` keys aside. */
  keys: string[];
  envNames: string[];
  /** The `juicefs format` flags it gives values for (each in key `format.<flag>`). */
  formatFlags: string[];
  /** The one value it keeps: `name`, the file system's name (no credential), for mountPodPatch `${VOLUME_NAME}`. */
  volumeName?: string;
}

/** What the injector may know of a Secret: its keys and the names of its format flags, never a credential. */
export function summariseSecret(source: Record<string, string> | undefined): SecretSummary {
  const envNames = Object.keys(parseEnvs(decode(source, SECRET_KEYS.envs))).sort();
  const all = Object.keys(normaliseSecretData(source));
  const keys = all.filter((k) => k !== SECRET_KEYS.envs && !k.startsWith(FORMAT_FLAG_KEY_PREFIX)).sort();
  const formatFlags = all
    .filter((k) => k.startsWith(FORMAT_FLAG_KEY_PREFIX))
    .map((k) => k.slice(FORMAT_FLAG_KEY_PREFIX.length))
    .sort();
  const volumeName = decode(source, SECRET_KEYS.name);
  return { keys, envNames, formatFlags, ...(volumeName !== undefined && { volumeName }) };
}

/** What decides whether a Secret may back a JuiceFS volume: its place, name, type and keys (never its values). */
export interface SecretShape {
  namespace: string;
  name: string;
  type?: string;
  data?: Record<string, string>;
}

/**
 * Why a Secret must not back a JuiceFS volume (and so is never copied nor referenced), or undefined when it may:
 * only an Opaque Secret with a `metaurl` (CE) or `token` (EE) key, and never the webhook's or the broker's certificate
 * Secret.
 * The type rule keeps out ServiceAccount tokens (they too have a `token` key), TLS and registry Secrets.
 */
export function unfitSourceSecret(secret: SecretShape, certSecretName = WEBHOOK_CERT_SECRET_NAME): string | undefined {
  const what = `Secret ${secret.namespace}/${secret.name}`;
  if (secret.name === certSecretName) return `${what} is the webhook's certificate Secret, not a JuiceFS Secret`;
  if (secret.name === CREDENTIALS_CERT_SECRET_NAME)
    return `${what} is the credential broker's certificate Secret, not a JuiceFS Secret`;
  if (secret.type !== undefined && secret.type !== '' && secret.type !== 'Opaque')
    return `${what} has type ${secret.type}; a JuiceFS Secret is Opaque`;
  const keys = Object.keys(secret.data ?? {});
  if (!keys.includes(SECRET_KEYS.metaurl) && !keys.includes(SECRET_KEYS.token))
    return `${what} has neither "${SECRET_KEYS.metaurl}" nor "${SECRET_KEYS.token}": not a JuiceFS Secret`;
  return undefined;
}

/** What a seal binds: the source Secret (its uid is the key), the PVC, and the copy the controller made. */
export interface SealSubject {
  sourceUid: string;
  namespace: string;
  pvcName: string;
  pvcUid: string;
  copyName: string;
}

function sealMac(subject: SealSubject, copyUid: string): string {
  const message = [subject.namespace, subject.pvcName, subject.pvcUid, subject.copyName, copyUid].join('/');
  return createHmac('sha256', subject.sourceUid).update(message).digest('hex').slice(0, 32);
}

/**
 * The controller's seal for the copy it made (uid `copyUid`), written on the PVC. Keyed by the source Secret's
 * uid, which a namespace user cannot read: they cannot make a seal for a copy of their own (ADR 0010).
 */
export function secretCopySeal(subject: SealSubject, copyUid: string): string {
  return `${copyUid}.${sealMac(subject, copyUid)}`;
}

/** The uid of the copy a seal vouches for, or undefined when the seal is absent or not the controller's. */
export function verifySecretCopySeal(seal: string | undefined, subject: SealSubject): string | undefined {
  if (!seal || !subject.sourceUid || !subject.pvcUid) return undefined;
  const dot = seal.lastIndexOf('.');
  if (dot <= 0) return undefined;
  const copyUid = seal.slice(0, dot);
  const given = Buffer.from(seal.slice(dot + 1), 'utf8');
  const wanted = Buffer.from(sealMac(subject, copyUid), 'utf8');
  return given.length === wanted.length && timingSafeEqual(given, wanted) ? copyUid : undefined;
}
