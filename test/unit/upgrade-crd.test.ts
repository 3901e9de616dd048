// The shipped CRD (manifests/upgrade-crd.yaml) says what src/upgrade/types.ts says: group, names, kinds,
// phases, and a status subresource (the reconciler writes only through it).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { parse } from 'yaml';
import {
  ACTIVE_PHASES,
  UPGRADE_GROUP,
  UPGRADE_KIND,
  UPGRADE_KINDS,
  UPGRADE_PLURAL,
  UPGRADE_VERSION,
} from '../../src/upgrade/types.js';

interface Schema {
  properties?: Record<string, Schema>;
  items?: Schema;
  enum?: string[];
}

const crd = parse(readFileSync(path.resolve(import.meta.dirname, '../../manifests/upgrade-crd.yaml'), 'utf8')) as {
  metadata: { name: string };
  spec: {
    group: string;
    scope: string;
    names: { kind: string; plural: string };
    versions: { name: string; subresources?: { status?: object }; schema: { openAPIV3Schema: Schema } }[];
  };
};

t.test('names and scope', async (t) => {
  t.equal(crd.metadata.name, `${UPGRADE_PLURAL}.${UPGRADE_GROUP}`);
  t.equal(crd.spec.group, UPGRADE_GROUP);
  t.equal(crd.spec.names.kind, UPGRADE_KIND);
  t.equal(crd.spec.scope, 'Cluster');
  t.same(
    crd.spec.versions.map((v) => v.name),
    [UPGRADE_VERSION],
  );
  t.ok(crd.spec.versions[0].subresources?.status, 'status subresource');
});

t.test('enums match the types', async (t) => {
  const root = crd.spec.versions[0].schema.openAPIV3Schema.properties!;
  t.same(root.spec.properties!.kind.enum, UPGRADE_KINDS);
  t.same(root.status.properties!.pods.items!.properties!.phase.enum, [...ACTIVE_PHASES, 'Succeeded', 'Failed']);
});
