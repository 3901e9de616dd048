import t from 'tap';
import { PathPatternError, renderPathPattern } from '../../src/contract/path-pattern.js';
import {
  parametersNeed,
  renderParameters,
  renderTemplate,
  TemplateError,
  type TemplateSources,
} from '../../src/contract/template.js';

const sources: TemplateSources = {
  pvc: { name: 'data', namespace: 'team', labels: { app: 'web' }, annotations: { 'x.io/dir': 'a/b', owner: 'ann' } },
  node: {
    name: 'node-7',
    podCIDR: '10.0.7.0/24',
    labels: { 'topology.kubernetes.io/zone': 'z1' },
    annotations: { rack: 'r4' },
  },
};
const pvcOnly: TemplateSources = { pvc: sources.pvc };

t.test('both spellings of the PVC, as the reference driver and its docs write them', async (t) => {
  t.equal(renderTemplate('${.PVC.namespace}-${.PVC.name}', sources).text, 'team-data');
  t.equal(renderTemplate('${.pvc.namespace}-${.pvc.name}', sources).text, 'team-data');
  t.equal(renderTemplate('${ .pvc.labels.app }', sources).text, 'web', 'spaces inside the braces');
  t.equal(renderTemplate('${.pvc.annotations.owner}/${.PVC.annotations.owner}', sources).text, 'ann/ann');
});

t.test('node placeholders', async (t) => {
  t.equal(renderTemplate('${.node.name}', sources).text, 'node-7');
  t.equal(renderTemplate('${.node.podCIDR}', sources).text, '10.0.7.0/24', 'node values are the admin’s: any text');
  t.equal(renderTemplate('zone=${.node.labels.topology.kubernetes.io/zone}', sources).text, 'zone=z1');
  t.equal(renderTemplate('${.node.annotations.rack}', sources).text, 'r4');
  t.throws(() => renderTemplate('${.node.name}', pvcOnly), /known only when the PVC has a selected node/);
});

t.test('placeholders with no value render empty, unless strict', async (t) => {
  const r = renderTemplate('team-${.pvc.labels.none}-${.node.annotations.none}', sources);
  t.same(r, { text: 'team--', missing: ['${.pvc.labels.none}', '${.node.annotations.none}'] });
  t.throws(() => renderTemplate('${.pvc.labels.none}', sources, { strict: true }), TemplateError);
});

t.test('unknown placeholders are errors; other ${…} text is left alone', async (t) => {
  t.throws(() => renderTemplate('${.PVC.uid}', sources), /names no field of the PVC/);
  t.throws(() => renderTemplate('${.node.zone}', sources), /names no field of the node/);
  t.throws(() => renderTemplate('${.pv.name}', sources), /unknown placeholder/);
  t.throws(() => renderTemplate('${.pvc.name', sources), /unknown placeholder/, 'unclosed');
  t.equal(renderTemplate('${HOME}/x', sources).text, '${HOME}/x', 'not this syntax');
  t.equal(renderTemplate('no placeholders', sources).text, 'no placeholders');
});

t.test("a PVC's labels and annotations cannot add options or change an image", async (t) => {
  for (const bad of ['a,cache-dir=/etc', 'x y', 'repo:evil', 'a=b', 'a/b', '${.pvc.name}']) {
    const s: TemplateSources = { pvc: { ...sources.pvc, annotations: { v: bad } } };
    t.throws(() => renderTemplate('subdir=${.pvc.annotations.v}', s), /may not bring/, JSON.stringify(bad));
  }
  const s: TemplateSources = { pvc: { ...sources.pvc, annotations: { v: 'a/b' } } };
  t.equal(renderTemplate('${.pvc.annotations.v}', s, { path: true }).text, 'a/b', 'a path may take a slash');
  t.throws(() =>
    renderTemplate(
      '${.pvc.annotations.v}',
      { pvc: { ...sources.pvc, annotations: { v: 'a,b' } } },
      {
        path: true,
      },
    ),
  );
});

t.test('pathPattern: strict, lowercase and node forms, one subdirectory rule', async (t) => {
  t.equal(renderPathPattern('${.pvc.namespace}/${.pvc.name}', sources), 'team/data');
  t.equal(renderPathPattern('${.node.name}/${.PVC.name}', sources), 'node-7/data');
  t.throws(() => renderPathPattern('team-${.pvc.labels.none}', sources), PathPatternError, 'no value: an error');
  t.throws(() => renderPathPattern('${.node.name}', pvcOnly), PathPatternError);
  t.throws(() => renderPathPattern('${HOME}', sources), PathPatternError, 'no literal ${ in a directory name');
  t.throws(() => renderPathPattern('${.pvc.annotations.x}', { pvc: { ...sources.pvc, annotations: { x: '..' } } }));
});

t.test("a StorageClass's parameters, as the provisioner renders them", async (t) => {
  const params = {
    'csi.storage.k8s.io/node-publish-secret-name': '${pvc.name}-secret',
    pathPattern: '${.pvc.labels.none}',
    'juicefs/mount-labels': 'team: ${.pvc.namespace}',
    'juicefs/mount-cpu-limit': '2',
    mountOptions: 'cache-size=${.pvc.annotations.none}',
  };
  const r = renderParameters(params, sources, new Set(['pathPattern']));
  t.same(r.parameters, {
    'csi.storage.k8s.io/node-publish-secret-name': '${pvc.name}-secret',
    pathPattern: '${.pvc.labels.none}',
    'juicefs/mount-labels': 'team: team',
    'juicefs/mount-cpu-limit': '2',
    mountOptions: 'cache-size=',
  });
  t.same(r.missing, ['mountOptions: ${.pvc.annotations.none}']);
  t.throws(() => renderParameters({ 'juicefs/x': '${.node.name}' }, pvcOnly, new Set()), /parameter juicefs\/x/);
  t.same(parametersNeed(params), { templated: true, node: false, pvcObject: true });
  t.same(parametersNeed({ a: '${.pvc.name}' }), { templated: true, node: false, pvcObject: false });
  t.same(parametersNeed({ a: '${.node.name}', 'csi.storage.k8s.io/x': '${.pvc.labels.q}' }), {
    templated: true,
    node: true,
    pvcObject: false,
  });
  t.throws(() => parametersNeed({ a: '${.PVC.uid}' }), /parameter a/);
});
