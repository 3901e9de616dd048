// The compiled CLI laid out as the image holds it (Dockerfile: dist/src without
// the harness, package.json and proto/ beside dist/): the version and the CSI
// proto are found there, and `jfs-sidecar local` says it is not shipped.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { CLI } from '../../src/local/components.js';

const ROOT = path.resolve(import.meta.dirname, '../..');

t.test('the Dockerfile leaves the harness out and ships what the package root needs', async (t) => {
  const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
  t.match(dockerfile, /rm -rf dist\/src\/local\b/, 'the build stage removes the compiled harness');
  const final = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
  t.match(final, /^COPY --from=build \/src\/dist \.\/dist$/m, 'dist');
  t.match(final, /^COPY package\.json \.\/$/m, 'package.json beside dist (the version)');
  t.match(final, /^COPY proto \.\/proto$/m, 'proto/ beside dist (the CSI spec)');
});

t.test('the CLI in the image layout', async (t) => {
  const app = mkdtempSync(path.join(tmpdir(), 'jfs-image-'));
  t.teardown(() => rmSync(app, { recursive: true, force: true }));
  const dist = path.dirname(path.dirname(CLI)); // …/dist/src
  cpSync(dist, path.join(app, 'dist/src'), {
    recursive: true,
    filter: (src) => src !== path.join(dist, 'local'),
  });
  cpSync(path.join(ROOT, 'package.json'), path.join(app, 'package.json'));
  cpSync(path.join(ROOT, 'proto'), path.join(app, 'proto'), { recursive: true });
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(app, 'node_modules'));
  const main = path.join(app, 'dist/src/cli/main.js');
  const node = (args: string[]) => spawnSync(process.execPath, args, { cwd: app, encoding: 'utf8' });

  const version = node([main, '--version']);
  t.equal(version.status, 0, version.stderr);
  t.equal(
    version.stdout.trim(),
    (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version,
  );

  const proto = node([
    '--input-type=module',
    '-e',
    `const m = await import(${JSON.stringify(path.join(app, 'dist/src/csi/server.js'))});
     m.loadCsi();
     process.stdout.write(m.PROTO_FILE);`,
  ]);
  t.equal(proto.status, 0, proto.stderr);
  t.equal(proto.stdout, path.join(app, 'proto/csi/v1/csi.proto'), 'the proto beside dist, loaded');

  const local = node([main, 'local']);
  t.equal(local.status, 1, 'local fails');
  t.match(local.stderr, /^error: `jfs-sidecar local` needs the local cluster harness/, local.stderr);
  t.match(local.stderr, /npm start/, 'and says what to do instead');
  t.notMatch(local.stderr, /\n\s+at /, 'a message, not a stack');
});
