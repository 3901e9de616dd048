// The validating webhook's AdmissionReviews (./validation in src/resolve holds the rules): Secrets marked
// `juicefs.com/validate-secret: "true"` on CREATE/UPDATE and PVs on CREATE. Anything else routed here is allowed
// unchanged; a malformed review is a 400, never a crash.
import type { V1PersistentVolume, V1Secret } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { validatePv, validateSecret, type Verdict } from '../resolve/validation.js';
import { ADMISSION_API_VERSION, cleanWarnings, isRecord, reply, type AdmissionResult } from './admission.js';

export interface ValidationDeps {
  /** Every PV the webhook's cache holds. */
  pvs: () => readonly V1PersistentVolume[];
  /**
   * Why the Secret's metadata engine does not answer (`juicefs status`), or undefined when it does; unset: not
   * asked (the admin opts in: it runs the client for every marked Secret).
   */
  secretStatus?: (secret: V1Secret) => Promise<string | undefined>;
  log: Logger;
}

export async function validationReview(body: unknown, deps: ValidationDeps): Promise<AdmissionResult> {
  if (!isRecord(body) || body.kind !== 'AdmissionReview' || body.apiVersion !== ADMISSION_API_VERSION)
    return { kind: 'bad-request', message: `body is not an ${ADMISSION_API_VERSION} AdmissionReview` };
  const request = body.request;
  if (!isRecord(request) || typeof request.uid !== 'string' || !request.uid)
    return { kind: 'bad-request', message: 'request or request.uid is missing' };
  const uid = request.uid;
  const kind = isRecord(request.kind) ? request.kind : {};
  const object = request.object;
  const allowed = (result: string) => ({ kind: 'review' as const, review: reply(uid, { allowed: true }), result });
  if (request.subResource !== undefined || kind.group !== '' || !isRecord(object)) return allowed('ignored');
  let verdict: Verdict;
  let what: string;
  if (kind.kind === 'Secret' && (request.operation === 'CREATE' || request.operation === 'UPDATE')) {
    const secret = object as V1Secret;
    what = `secret ${String(request.namespace)}/${secret.metadata?.name ?? ''}`;
    verdict = validateSecret({ ...secret, metadata: { ...secret.metadata, namespace: String(request.namespace) } });
    if (!verdict.denied && deps.secretStatus) {
      const down = await deps.secretStatus(secret);
      if (down)
        verdict = { ...verdict, denied: `Secret ${String(request.namespace)}/${secret.metadata?.name ?? ''}: ${down}` };
    }
  } else if (kind.kind === 'PersistentVolume' && request.operation === 'CREATE') {
    const pv = object as V1PersistentVolume;
    what = `pv ${pv.metadata?.name ?? ''}`;
    verdict = validatePv(pv, deps.pvs());
  } else return allowed('ignored');
  const warnings = cleanWarnings(verdict.warnings);
  if (verdict.denied) {
    deps.log.info({ uid, object: what, reason: verdict.denied }, 'denied');
    return {
      kind: 'review',
      review: reply(uid, {
        allowed: false,
        status: { code: 403, message: verdict.denied, reason: 'Forbidden' },
        warnings,
      }),
      result: 'denied',
    };
  }
  return { kind: 'review', review: reply(uid, { allowed: true, warnings }), result: 'allowed' };
}
