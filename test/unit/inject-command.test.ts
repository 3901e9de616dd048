// `jfs-sidecar inject` through its real interface: the compiled CLI, files and stdin.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { parseAllDocuments } from 'yaml';
import { CLI } from '../../src/local/components.js';
import { TESTDATA } from '../golden/golden.js';

const run = (args: string[], input?: string) =>
  spawnSync(process.execPath, [CLI, 'inject', ...args], { input, encoding: 'utf8' });
const docs = (text: string) =>
  parseAllDocuments(text).map((d) => d.toJS() as { kind: string; metadata: { name: string } });

t.test('objects come out in input order, workloads injected, others unchanged', async (t) => {
  const file = path.join(TESTDATA, 'two-juicefs-and-other.yaml');
  const res = run(['-f', file]);
  t.equal(res.status, 0, res.stderr);
  const input = docs(readFileSync(file, 'utf8'));
  const output = docs(res.stdout);
  t.same(
    output.map((o) => `${o.kind}/${o.metadata.name}`),
    input.map((o) => `${o.kind}/${o.metadata.name}`),
    'same objects, same order',
  );
  t.same(output.slice(0, -1), input.slice(0, -1), 'non-workload objects unchanged');
  const pod = output.at(-1) as unknown as { spec: { initContainers: { name: string }[] } };
  t.same(
    pod.spec.initContainers.filter((c) => c.name.startsWith('jfs-mount')).map((c) => c.name),
    ['jfs-mount', 'jfs-mount-1'],
  );
});

t.test('stdin and several files; --serverless', async (t) => {
  const file = path.join(TESTDATA, 'one-pvc.yaml');
  const text = readFileSync(file, 'utf8');
  const [objects, pod] = [text.slice(0, text.lastIndexOf('---')), text.slice(text.lastIndexOf('---') + 4)];
  const res = run(['-f', '-', '--serverless'], `${objects}\n---\n${pod}`);
  t.equal(res.status, 0, res.stderr);
  t.match(res.stdout, /emptyDir: \{\}/);
  t.notMatch(res.stdout, /hostPath/);
});

t.test('a denial names the object and exits 1; bad input exits 2', async (t) => {
  const denied = run(['-f', path.join(TESTDATA, 'denied-missing-pv.yaml')]);
  t.equal(denied.status, 1);
  t.equal(denied.stdout, '', 'nothing on stdout');
  t.match(denied.stderr, /Pod team-a\/app: PersistentVolume gone-pv .* not found \[pv-not-found\]/);
  const missing = run(['-f', '/nonexistent.yaml']);
  t.equal(missing.status, 2);
  t.match(missing.stderr, /nonexistent/);
  const broken = run(['-f', '-'], 'kind: Pod\n  bad: [indent');
  t.equal(broken.status, 2);
  t.match(broken.stderr, /stdin: document 1/);
  const none = run([]);
  t.equal(none.status, 2);
});

t.test('warnings go to stderr', async (t) => {
  const res = run(['-f', path.join(TESTDATA, 'hostile-annotations.yaml')]);
  t.equal(res.status, 0);
  t.match(res.stderr, /warning: PersistentVolumeClaim data: annotation juicefs\/mount-image ignored/);
});
