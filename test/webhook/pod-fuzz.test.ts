// A seeded structural fuzzer over pod shapes (issue 11 class 9): every pod in
// test/testdata, with one to three fields replaced by values of the wrong type,
// deleted, duplicated or added where the injector looks, must get a
// well-formed AdmissionReview answer: allowed with a patch that applies, or a
// denial with a 4xx status, never an internal error. FUZZ_SEED=<n> replays a
// run; FUZZ_RUNS=<n> runs longer.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { KubernetesObject } from '@kubernetes/client-node';
import fjp from 'fast-json-patch';
import { pino } from 'pino';
import t from 'tap';
import { DEFAULT_GLOBAL_CONFIG } from '../../src/config/schema.js';
import { parseManifests } from '../../src/offline/inject-manifests.js';
import { ObjectView } from '../../src/resolve/object-view.js';
import { buildServer } from '../../src/webhook/server.js';
import { TESTDATA } from '../golden/golden.js';

const SEED = Number(process.env.FUZZ_SEED ?? '20261201');
const RUNS = Number(process.env.FUZZ_RUNS ?? '1500');

/** mulberry32: small, seedable, good enough to pick mutations. */
function rng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

type Json = unknown;
type Obj = Record<string, Json>;
const isObj = (v: Json): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

interface Seed {
  file: string;
  objects: KubernetesObject[];
  pod: Obj;
  namespace: string;
}

const seeds: Seed[] = [];
for (const file of readdirSync(TESTDATA).filter((f) => f.endsWith('.yaml') && !f.endsWith('.injected.yaml'))) {
  const objects = parseManifests(readFileSync(path.join(TESTDATA, file), 'utf8'), file);
  for (const o of objects.filter((o) => o.kind === 'Pod')) {
    seeds.push({ file, objects, pod: o as unknown as Obj, namespace: o.metadata?.namespace ?? 'default' });
  }
}

const FIELDS = [
  'metadata', 'spec', 'labels', 'annotations', 'name', 'namespace', 'generateName', 'volumes', 'containers',
  'initContainers', 'ephemeralContainers', 'env', 'envFrom', 'volumeMounts', 'persistentVolumeClaim', 'claimName',
  'ephemeral', 'volumeClaimTemplate', 'image', 'command', 'args', 'securityContext', 'resources', 'limits',
  'requests', 'mountPath', 'subPath', 'subPathExpr', 'readOnly', 'nodeSelector', 'tolerations', 'hostNetwork',
  'ports', 'restartPolicy', 'valueFrom', 'secretKeyRef', 'ownerReferences', 'privileged', 'capabilities',
]; // prettier-ignore

function junk(r: () => number, depth = 0): Json {
  const pick = Math.floor(r() * 18);
  switch (pick) {
    case 0: return 'x';
    case 1: return '';
    case 2: return 0;
    case 3: return -1;
    case 4: return 1e308;
    case 5: return true;
    case 6: return null;
    case 7: return [];
    case 8: return {};
    case 9: return [null];
    case 10: return [{}];
    case 11: return { name: 1 };
    case 12: return '$(JUICEFS_POD_UID)/../..';
    case 13: return 'jfs-mount';
    case 14: return depth < 4 ? [junk(r, depth + 1), junk(r, depth + 1)] : [];
    case 15: return depth < 4 ? { [FIELDS[Math.floor(r() * FIELDS.length)]]: junk(r, depth + 1) } : {};
    case 16: return { name: 'data', persistentVolumeClaim: { claimName: 'data' } };
    default: return '-x';
  }
} // prettier-ignore

/** Every object and array inside `v`, with its parent and key, so mutations can reach any depth. */
function places(v: Json, out: { parent: Obj | Json[]; key: string | number }[] = []) {
  if (Array.isArray(v)) {
    v.forEach((x, i) => {
      out.push({ parent: v, key: i });
      places(x, out);
    });
  } else if (isObj(v)) {
    for (const [k, x] of Object.entries(v)) {
      out.push({ parent: v, key: k });
      places(x, out);
    }
  }
  return out;
}

function mutate(pod: Obj, r: () => number): string[] {
  const done: string[] = [];
  const n = 1 + Math.floor(r() * 3);
  for (let i = 0; i < n; i++) {
    const all = places(pod);
    if (!all.length) break;
    const { parent, key } = all[Math.floor(r() * all.length)];
    const kind = r();
    const value = junk(r);
    if (kind < 0.45) {
      (parent as Record<string | number, Json>)[key] = value;
      done.push(`set ${String(key)}=${JSON.stringify(value)}`);
    } else if (kind < 0.6) {
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else delete parent[key as string];
      done.push(`delete ${String(key)}`);
    } else if (kind < 0.75 && Array.isArray(parent)) {
      parent.push(structuredClone(parent[key as number]));
      done.push(`duplicate [${String(key)}]`);
    } else {
      const target = (parent as Record<string | number, Json>)[key];
      const field = FIELDS[Math.floor(r() * FIELDS.length)];
      if (isObj(target)) {
        target[field] = value;
        done.push(`add ${String(key)}.${field}=${JSON.stringify(value)}`);
      } else {
        (parent as Record<string | number, Json>)[key] = value;
        done.push(`set ${String(key)}=${JSON.stringify(value)}`);
      }
    }
  }
  return done;
}

t.test(`seeded structural fuzzing of pods (seed ${SEED}, ${RUNS} runs)`, async (t) => {
  t.ok(seeds.length >= 5, `${seeds.length} seed pods`);
  const apps = new Map(
    seeds.map((s) => [
      s.file,
      buildServer({
        view: new ObjectView(s.objects),
        config: () => DEFAULT_GLOBAL_CONFIG,
        ready: () => true,
        onError: 'deny',
        log: pino({ level: 'silent' }),
      }),
    ]),
  );
  const r = rng(SEED);
  const failures: string[] = [];
  const outcomes: Record<string, number> = {};
  for (let run = 0; run < RUNS && failures.length < 5; run++) {
    const seed = seeds[Math.floor(r() * seeds.length)];
    const pod = structuredClone(seed.pod);
    const mutations = mutate(pod, r);
    const body = {
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: {
        uid: `u-${run}`,
        kind: { group: '', version: 'v1', kind: 'Pod' },
        operation: 'CREATE',
        namespace: seed.namespace,
        object: pod,
      },
    };
    const res = await apps.get(seed.file)!.inject({ method: 'POST', url: '/mutate', payload: body });
    const fail = (why: string) =>
      failures.push(`run ${run} (${seed.file}: ${mutations.join('; ')}): ${why}: ${res.body.slice(0, 300)}`);
    if (res.statusCode !== 200) {
      fail(`HTTP ${res.statusCode}`);
      continue;
    }
    const out = res.json<{
      kind?: string;
      apiVersion?: string;
      response?: { uid?: string; allowed?: boolean; patch?: string; status?: { code?: number; message?: string } };
    }>();
    const response = out.response;
    if (out.kind !== 'AdmissionReview' || out.apiVersion !== 'admission.k8s.io/v1' || response?.uid !== `u-${run}`) {
      fail('not a well-formed AdmissionReview');
      continue;
    }
    if (response.allowed === false) {
      const code = response.status?.code ?? 0;
      if (code !== 400 && code !== 403) fail(`denied with status ${code}`);
      else if (typeof response.status?.message !== 'string' || !response.status.message) fail('denial without message');
      outcomes[`denied ${code}`] = (outcomes[`denied ${code}`] ?? 0) + 1;
    } else if (response.allowed === true) {
      if (response.patch) {
        try {
          const ops = JSON.parse(Buffer.from(response.patch, 'base64').toString()) as fjp.Operation[];
          fjp.applyPatch(structuredClone(pod), ops, true);
        } catch (err) {
          fail(`patch does not apply: ${(err as Error).message}`);
        }
      }
      outcomes[response.patch ? 'injected' : 'allowed'] = (outcomes[response.patch ? 'injected' : 'allowed'] ?? 0) + 1;
    } else fail('allowed is not a boolean');
  }
  t.same(failures, [], `no failures; outcomes ${JSON.stringify(outcomes)}`);
});
