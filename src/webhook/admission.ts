// AdmissionReview v1 in, AdmissionReview v1 out. Validates the review, runs
// resolve → inject, and turns the result into a JSONPatch computed by diffing.
// No HTTP here: the server adapter maps AdmissionResult to a reply.
import type { V1Pod } from '@kubernetes/client-node';
import fjp from 'fast-json-patch';
import type { Logger } from 'pino';
import { DenyError } from '../contract/deny.js';
import { ephemeralContainersDenial } from '../inject/ephemeral.js';
import { describePod } from '../inject/inject.js';
import type { InjectOptions } from '../inject/types.js';
import { injectWithView } from '../inject/inject-with-view.js';
import { podShapeError } from './pod-shape.js';
import type { ClusterView } from '../resolve/resolve.js';
import { setTimeout as sleep } from 'node:timers/promises';

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';

/** What to do with a pod the webhook cannot process because of its own fault (not the pod's). */
export type OnError = 'deny' | 'allow';

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  patch?: string;
  patchType?: 'JSONPatch';
  status?: { code: number; message: string; reason?: string };
  warnings?: string[];
}

export interface AdmissionReviewOut {
  apiVersion: typeof ADMISSION_API_VERSION;
  kind: 'AdmissionReview';
  response: AdmissionResponse;
}

/** Result label for metrics and logs: injected, skipped:<code>, denied:<code>, ignored, error. */
export type AdmissionResult =
  { kind: 'review'; review: AdmissionReviewOut; result: string } | { kind: 'bad-request'; message: string };

export interface AdmissionDeps {
  view: ClusterView;
  options: () => InjectOptions;
  onError: OnError;
  log: Logger;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function reply(uid: string, response: Omit<AdmissionResponse, 'uid'>): AdmissionReviewOut {
  return { apiVersion: ADMISSION_API_VERSION, kind: 'AdmissionReview', response: { uid, ...response } };
}

/** Kubernetes shows at most a few hundred characters of a warning; keep each short and single-line. */
export function cleanWarnings(warnings: string[]): string[] | undefined {
  if (!warnings.length) return undefined;
  return warnings.map((w) => w.replace(/\s+/g, ' ').slice(0, 250));
}

export function review(body: unknown, deps: AdmissionDeps): AdmissionResult {
  if (!isRecord(body)) return { kind: 'bad-request', message: 'body is not a JSON object' };
  if (body.kind !== 'AdmissionReview') return { kind: 'bad-request', message: 'kind is not AdmissionReview' };
  if (body.apiVersion !== ADMISSION_API_VERSION) {
    return {
      kind: 'bad-request',
      message: `apiVersion ${String(body.apiVersion)} is not supported; use ${ADMISSION_API_VERSION}`,
    };
  }
  const request = body.request;
  if (!isRecord(request)) return { kind: 'bad-request', message: 'request is missing' };
  const uid = request.uid;
  if (typeof uid !== 'string' || uid === '') {
    return { kind: 'bad-request', message: 'request.uid is missing or not a non-empty string' };
  }

  const kind = request.kind;
  const isPodKind = isRecord(kind) && kind.group === '' && kind.kind === 'Pod';
  if (isPodKind && request.subResource === 'ephemeralcontainers' && request.operation === 'UPDATE') {
    return reviewEphemeralContainers(uid, request, deps);
  }
  const isPod = isPodKind && request.subResource === undefined;
  if (!isPod || request.operation !== 'CREATE') {
    // Only pod CREATE is ours; anything else the configuration routed here is let through unchanged.
    return { kind: 'review', review: reply(uid, { allowed: true }), result: 'ignored' };
  }
  const pod = request.object;
  const namespace = typeof request.namespace === 'string' ? request.namespace : undefined;
  if (!isRecord(pod) || !namespace) {
    return deny(uid, 'invalid-pod', 'request.object is not a pod in a namespace', deps, 400);
  }
  // Fields of the wrong type would reach the injector, which is written for typed pods.
  const shape = podShapeError(pod);
  if (shape) return deny(uid, 'invalid-pod', `${namespace}: ${shape}`, deps, 400);
  const typedPod = pod as V1Pod;
  const where = podWhere(typedPod, namespace);
  try {
    const outcome = injectWithView(typedPod, namespace, deps.view, deps.options());
    if (outcome.kind === 'skipped') {
      deps.log.debug({ uid, pod: where, code: outcome.code }, 'not injected');
      return {
        kind: 'review',
        review: reply(uid, { allowed: true, warnings: cleanWarnings(outcome.warnings) }),
        result: `skipped:${outcome.code}`,
      };
    }
    const patch = fjp.compare(pod, outcome.pod);
    deps.log.info({ uid, pod: where, operations: patch.length, warnings: outcome.warnings.length }, 'injected');
    return {
      kind: 'review',
      review: reply(uid, {
        allowed: true,
        patchType: 'JSONPatch',
        patch: Buffer.from(JSON.stringify(patch)).toString('base64'),
        warnings: cleanWarnings(outcome.warnings),
      }),
      result: 'injected',
    };
  } catch (err) {
    if (err instanceof DenyError) return deny(uid, err.code, `${where}: ${err.message}`, deps, 403);
    // Our own failure on a pod we could not understand: the configured policy decides.
    const message = err instanceof Error ? err.message : String(err);
    deps.log.error({ uid, pod: where, err: message, policy: deps.onError }, 'injection failed');
    if (deps.onError === 'allow') {
      return {
        kind: 'review',
        review: reply(uid, {
          allowed: true,
          warnings: [`jfs-sidecar: not injected because of an internal error: ${message}`.slice(0, 250)],
        }),
        result: 'error:allowed',
      };
    }
    return deny(uid, 'internal', `${where}: JuiceFS sidecar injection failed: ${message}`, deps, 500);
  }
}

/** pods/ephemeralcontainers: nothing to inject, only what src/inject/ephemeral.ts refuses. */
function reviewEphemeralContainers(
  uid: string,
  request: Record<string, unknown>,
  deps: AdmissionDeps,
): AdmissionResult {
  const pod = request.object;
  if (!isRecord(pod)) return deny(uid, 'invalid-pod', 'request.object is not a pod', deps, 400);
  const old = isRecord(request.oldObject) ? (request.oldObject as V1Pod) : undefined;
  const denial = ephemeralContainersDenial(pod, old);
  if (!denial) return { kind: 'review', review: reply(uid, { allowed: true }), result: 'ignored' };
  const namespace = typeof request.namespace === 'string' ? request.namespace : undefined;
  return deny(uid, denial.code, `${podWhere(pod, namespace)}: ${denial.message}`, deps, 403);
}

/** "Pod ns/name" for messages and logs: the review's namespace, since a pod being created may not carry it. */
function podWhere(pod: V1Pod, namespace: string | undefined): string {
  return describePod({ ...pod, metadata: { ...pod.metadata, namespace } });
}

/** How long a review waits for the controller to seal a PVC created a moment before the pod (ADR 0010). */
export const SEAL_WAIT_MS = 3_000;

/**
 * review(), but a pod denied only because its PVC is not sealed yet is reviewed again as the caches catch up, for up
 * to `waitMs`: the controller seals a new PVC within moments, so `kubectl apply` of a PVC and its pod together
 * still works, while a PVC that stays unsealed (a Secret the controller did not make) is denied.
 */
export async function reviewAwaitingSeal(
  body: unknown,
  deps: AdmissionDeps,
  waitMs = SEAL_WAIT_MS,
): Promise<AdmissionResult> {
  const started = Date.now();
  const first = review(body, deps);
  if (!awaitsSeal(first)) return first;
  // The first attempt logged its denial; the retries are silent so that a wait is one log line, not fifteen.
  const quiet = { ...deps, log: deps.log.child({}, { level: 'silent' }) };
  let result = first;
  while (awaitsSeal(result) && Date.now() - started < waitMs) {
    await sleep(SEAL_POLL_MS);
    result = review(body, quiet);
  }
  if (!awaitsSeal(result) && result.kind === 'review') {
    deps.log.info(
      { uid: result.review.response.uid, result: result.result, waitedMs: Date.now() - started },
      'reviewed again once the PVC was sealed',
    );
  }
  return result;
}

const SEAL_POLL_MS = 200;

function awaitsSeal(result: AdmissionResult): boolean {
  return result.kind === 'review' && result.result === 'denied:secret-copy-not-ready';
}

const STATUS_REASON: Record<number, string> = { 400: 'BadRequest', 403: 'Forbidden', 500: 'InternalError' };

function deny(uid: string, code: string, message: string, deps: AdmissionDeps, httpCode: number): AdmissionResult {
  deps.log.warn({ uid, code, reason: message }, 'denied');
  return {
    kind: 'review',
    review: reply(uid, {
      allowed: false,
      status: { code: httpCode, message: `jfs-sidecar [${code}]: ${message}`, reason: STATUS_REASON[httpCode] },
    }),
    result: `denied:${code}`,
  };
}
