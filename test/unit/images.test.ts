// The local images without a registry (src/local/images.ts, oci-archive.ts,
// image-registry.ts): the archive is a well-formed OCI image layout whose
// digests depend on the files only (two builds, two folders, same digests), the
// cache is keyed by content, and the loopback registry answers what containerd
// asks with the right digests, and 404 for what it does not have.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import {
  BUSYBOX_IMAGES,
  IMAGE_SPECS,
  Hasher,
  buildImage,
  busyboxBase,
  qualifiedRef,
  specKey,
  type ImageSpec,
} from '../../src/local/images.js';
import { MEDIA_TYPE, writeImageArchive } from '../../src/local/oci-archive.js';
import { registriesOf, startImageRegistry, writeHostsToml } from '../../src/local/image-registry.js';

const sha256 = (b: Buffer) => 'sha256:' + createHash('sha256').update(b).digest('hex');

function tmp(t: Test, name: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), `jfs-images-${name}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A small root filesystem with the kinds of entry images hold. */
function makeRootfs(dir: string): void {
  mkdirSync(path.join(dir, 'bin'), { recursive: true });
  mkdirSync(path.join(dir, 'etc'));
  mkdirSync(path.join(dir, 'tmp'));
  chmodSync(path.join(dir, 'tmp'), 0o1777);
  writeFileSync(path.join(dir, 'bin/tool'), '#!/bin/sh\necho tool\n');
  chmodSync(path.join(dir, 'bin/tool'), 0o4755);
  symlinkSync('/bin/tool', path.join(dir, 'bin/alias'));
  writeFileSync(path.join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  chmodSync(path.join(dir, 'etc/passwd'), 0o644);
}

function untar(archive: string, into: string): void {
  const res = spawnSync('tar', ['-xf', archive, '-C', into], { encoding: 'utf8' });
  if (res.status !== 0) throw new Error(res.stderr);
}

const IMAGE = {
  refs: ['docker.io/example/tool:1.0', 'docker.io/example/tool:latest'],
  config: { Entrypoint: ['/bin/tool'], Cmd: ['--help'], Env: ['A=1'], WorkingDir: '/etc' },
};

t.test('the archive is an OCI image layout, the same for the same files', async (t) => {
  const a = tmp(t, 'a');
  const b = tmp(t, 'b');
  makeRootfs(path.join(a, 'rootfs'));
  // The second copy is made later, with other times and another folder name: nothing of that may show.
  await new Promise((r) => setTimeout(r, 20));
  cpSync(path.join(a, 'rootfs'), path.join(b, 'other'), { recursive: true, verbatimSymlinks: true });
  utimesSync(path.join(b, 'other/bin/tool'), new Date(), new Date(2001, 1, 1));
  const one = await writeImageArchive(path.join(a, 'rootfs'), path.join(a, 'image.tar'), IMAGE);
  const two = await writeImageArchive(path.join(b, 'other'), path.join(b, 'image.tar'), IMAGE);
  t.same(two, one, 'same digests, offsets and sizes');
  t.ok(readFileSync(path.join(a, 'image.tar')).equals(readFileSync(path.join(b, 'image.tar'))), 'same bytes');

  const out = tmp(t, 'out');
  untar(path.join(a, 'image.tar'), out);
  t.same(JSON.parse(readFileSync(path.join(out, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' });
  const blob = (digest: string) => readFileSync(path.join(out, 'blobs/sha256', digest.slice('sha256:'.length)));
  const index = JSON.parse(readFileSync(path.join(out, 'index.json'), 'utf8'));
  t.equal(index.schemaVersion, 2);
  t.equal(index.mediaType, MEDIA_TYPE.index);
  t.same(
    index.manifests.map((m: any) => m.annotations),
    [
      { 'io.containerd.image.name': 'docker.io/example/tool:1.0', 'org.opencontainers.image.ref.name': '1.0' },
      { 'io.containerd.image.name': 'docker.io/example/tool:latest', 'org.opencontainers.image.ref.name': 'latest' },
    ],
    'each reference names the one manifest, by full name and by tag',
  );
  for (const m of index.manifests) {
    t.equal(m.digest, one.manifest.digest);
    t.equal(m.size, one.manifest.size);
    t.equal(m.mediaType, MEDIA_TYPE.manifest);
    t.equal(m.platform.os, 'linux');
  }
  const manifestBytes = blob(one.manifest.digest);
  t.equal(sha256(manifestBytes), one.manifest.digest, 'the manifest blob has its digest');
  t.equal(manifestBytes.toString(), one.manifestJson);
  const manifest = JSON.parse(manifestBytes.toString());
  t.equal(manifest.schemaVersion, 2);
  t.equal(manifest.mediaType, MEDIA_TYPE.manifest);
  t.equal(manifest.config.mediaType, MEDIA_TYPE.config);
  t.equal(manifest.config.digest, one.configDigest);
  t.equal(manifest.layers.length, 1);
  t.equal(manifest.layers[0].mediaType, MEDIA_TYPE.layer);
  const configBytes = blob(manifest.config.digest);
  const layerBytes = blob(manifest.layers[0].digest);
  t.equal(sha256(configBytes), manifest.config.digest, 'the config blob has its digest');
  t.equal(configBytes.length, manifest.config.size);
  t.equal(sha256(layerBytes), manifest.layers[0].digest, 'the layer blob has its digest');
  t.equal(layerBytes.length, manifest.layers[0].size);
  const config = JSON.parse(configBytes.toString());
  t.equal(config.os, 'linux');
  t.equal(config.architecture, 'amd64');
  t.same(config.rootfs, { type: 'layers', diff_ids: [manifest.layers[0].digest] }, 'uncompressed: diff_id = digest');
  t.same(config.config, {
    Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'A=1'],
    Entrypoint: ['/bin/tool'],
    Cmd: ['--help'],
    WorkingDir: '/etc',
  });
  // The blob offsets the registry serves from are where the bytes are.
  const archive = readFileSync(path.join(a, 'image.tar'));
  for (const [digest, loc] of Object.entries(one.blobs))
    t.equal(sha256(archive.subarray(loc.offset, loc.offset + loc.size)), digest, `offset of ${loc.mediaType}`);

  const listing = spawnSync('tar', ['-tvf', '-'], { input: layerBytes, encoding: 'utf8' }).stdout;
  t.match(listing, /^drwxrwxrwt 0\/0 +0 1970-01-01 00:00 tmp\/$/m, 'sticky /tmp, owner 0, time 0');
  t.match(listing, /^-rwsr-xr-x 0\/0 .* bin\/tool$/m, 'setuid kept');
  t.match(listing, /^lrwxrwxrwx 0\/0 .* bin\/alias -> \/bin\/tool$/m, 'symlink kept');
  t.notMatch(listing, /\.\//, 'names without ./');
});

t.test('the cache is keyed by content, not by times or folders', async (t) => {
  const src = tmp(t, 'src');
  const cache = tmp(t, 'cache');
  writeFileSync(path.join(src, 'payload'), 'one');
  chmodSync(path.join(src, 'payload'), 0o644);
  const spec: ImageSpec = {
    name: 'example',
    refs: ['docker.io/example/payload:1'],
    config: { Cmd: ['/payload'] },
    steps: [{ dir: 'etc' }, { file: path.join(src, 'payload'), to: 'payload' }, { text: 'x\n', to: 'etc/x' }],
  };
  const hasher = new Hasher(path.join(cache, 'input-hashes.json'));
  const first = await buildImage(spec, cache, { hasher });
  t.ok(first.built, 'cold: built');
  const again = await buildImage(spec, cache, { hasher });
  t.notOk(again.built, 'warm: taken from the cache');
  t.equal(again.manifest.digest, first.manifest.digest);
  t.equal(again.archive, first.archive);

  utimesSync(path.join(src, 'payload'), new Date(), new Date(2010, 0, 1));
  t.equal(specKey(spec, hasher), first.key, 'a new mtime with the same content keeps the key');
  cpSync(path.join(src, 'payload'), path.join(src, 'moved'));
  t.equal(
    specKey(
      { ...spec, steps: [spec.steps[0], { file: path.join(src, 'moved'), to: 'payload' }, spec.steps[2]] },
      hasher,
    ),
    first.key,
    'the same content from another folder keeps the key',
  );

  writeFileSync(path.join(src, 'payload'), 'two');
  const changed = await buildImage(spec, cache, { hasher });
  t.ok(changed.built, 'new content: built again');
  t.not(changed.key, first.key);
  t.not(changed.configDigest, first.configDigest, 'and a new image ID');
  t.not(specKey({ ...spec, config: { Cmd: ['/other'] } }, hasher), changed.key, 'the config is part of the key');
});

t.test('pause and busybox build the same twice', async (t) => {
  const [c1, c2] = [tmp(t, 'c1'), tmp(t, 'c2')];
  for (const name of ['pause', 'busybox'] as const) {
    const one = await buildImage(IMAGE_SPECS[name](), c1);
    const two = await buildImage(IMAGE_SPECS[name](), c2);
    t.equal(two.manifest.digest, one.manifest.digest, `${name}: same manifest digest`);
    t.equal(two.configDigest, one.configDigest, `${name}: same image ID`);
  }
  const busybox = await buildImage(IMAGE_SPECS.busybox(), c1);
  t.same(busybox.refs, BUSYBOX_IMAGES);
  const out = tmp(t, 'bb');
  untar(busybox.archive, out);
  const layer = Object.values(busybox.blobs).find((b) => b.mediaType === MEDIA_TYPE.layer)!;
  const listing = spawnSync('tar', ['-tvf', path.join(out, 'blobs/sha256', layer.digest.slice(7))], {
    encoding: 'utf8',
  }).stdout;
  t.match(listing, /^lrwxrwxrwx 0\/0 .* bin\/sh -> \/bin\/busybox$/m, 'applet links');
  t.match(listing, /^-rw-r--r-- 0\/0 .* etc\/passwd$/m);
  t.match(listing, /^-rw-r--r-- 0\/0 .* etc\/group$/m);
  t.match(listing, /^drwxrwxrwt 0\/0 .* tmp\/$/m, '/tmp 1777');
  t.ok(busyboxBase().some((s) => 'link' in s && s.to === 'bin/sh'));
});

t.test('names as users write them', async (t) => {
  t.equal(qualifiedRef('busybox'), 'docker.io/library/busybox:latest');
  t.equal(qualifiedRef('busybox:1.36'), 'docker.io/library/busybox:1.36');
  t.equal(qualifiedRef('jfs-sidecar:0.1.0'), 'docker.io/library/jfs-sidecar:0.1.0');
  t.equal(qualifiedRef('juicedata/mount:ce-v1.3.1'), 'docker.io/juicedata/mount:ce-v1.3.1');
  t.equal(qualifiedRef('registry.k8s.io/pause:3.10'), 'registry.k8s.io/pause:3.10');
  t.equal(qualifiedRef('localhost:5000/x'), 'localhost:5000/x:latest');
});

t.test('the loopback registry', async (t) => {
  const dir = tmp(t, 'reg');
  makeRootfs(path.join(dir, 'rootfs'));
  const image = {
    ...(await writeImageArchive(path.join(dir, 'rootfs'), path.join(dir, 'image.tar'), IMAGE)),
    archive: path.join(dir, 'image.tar'),
  };
  const registry = await startImageRegistry([image]);
  t.teardown(() => registry.close());
  t.match(registry.host, /^127\.0\.0\.1:\d+$/);
  const get = (p: string, init: RequestInit = {}) => fetch(registry.url + p, init);

  const ping = await get('/v2/', { method: 'HEAD' });
  t.equal(ping.status, 200, 'HEAD /v2/');
  t.equal(ping.headers.get('docker-distribution-api-version'), 'registry/2.0');

  for (const p of ['/v2/example/tool/manifests/latest?ns=docker.io', '/v2/docker.io/example/tool/manifests/1.0']) {
    const head = await get(p, { method: 'HEAD' });
    t.equal(head.status, 200, `HEAD ${p}`);
    t.equal(head.headers.get('content-type'), MEDIA_TYPE.manifest);
    t.equal(head.headers.get('docker-content-digest'), image.manifest.digest);
    t.equal(Number(head.headers.get('content-length')), image.manifest.size);
    t.equal((await head.arrayBuffer()).byteLength, 0, 'no body on HEAD');
    const body = Buffer.from(await (await get(p)).arrayBuffer());
    t.equal(sha256(body), image.manifest.digest, `GET ${p}: the bytes of that digest`);
  }
  const byDigest = await get(`/v2/example/tool/manifests/${image.manifest.digest}?ns=docker.io`);
  t.equal(byDigest.status, 200, 'manifest by digest');
  t.equal(sha256(Buffer.from(await byDigest.arrayBuffer())), image.manifest.digest);

  for (const [digest, loc] of Object.entries(image.blobs)) {
    const res = await get(`/v2/example/tool/blobs/${digest}?ns=docker.io`);
    t.equal(res.status, 200);
    t.equal(res.headers.get('docker-content-digest'), digest);
    const bytes = Buffer.from(await res.arrayBuffer());
    t.equal(bytes.length, loc.size);
    t.equal(sha256(bytes), digest, `blob ${loc.mediaType}`);
  }
  const layer = Object.values(image.blobs).find((b) => b.mediaType === MEDIA_TYPE.layer)!;
  const part = await get(`/v2/example/tool/blobs/${layer.digest}?ns=docker.io`, { headers: { Range: 'bytes=10-' } });
  t.equal(part.status, 206, 'a resumed blob');
  t.equal(part.headers.get('content-range'), `bytes 10-${layer.size - 1}/${layer.size}`);
  t.equal((await part.arrayBuffer()).byteLength, layer.size - 10);

  const missing = [
    '/v2/library/busybox/manifests/latest?ns=docker.io',
    '/v2/example/tool/manifests/latest?ns=quay.io',
    '/v2/example/tool/manifests/2.0?ns=docker.io',
    `/v2/example/tool/manifests/sha256:${'0'.repeat(64)}?ns=docker.io`,
    `/v2/example/tool/manifests/${image.configDigest}?ns=docker.io`,
    `/v2/example/tool/blobs/sha256:${'0'.repeat(64)}?ns=docker.io`,
    '/v2/example/tool/manifests/latest',
  ];
  for (const p of missing) {
    t.equal((await get(p, { method: 'HEAD' })).status, 404, `HEAD ${p}: 404`);
    const res = await get(p);
    t.equal(res.status, 404, `GET ${p}: 404`);
    t.match(await res.json(), { errors: [{ code: /_UNKNOWN$/ }] });
  }
  t.equal((await get('/v2/example/tool/manifests/latest?ns=docker.io', { method: 'PUT', body: '{}' })).status, 405);
});

t.test('hosts.toml for every registry of the refs, and _default', async (t) => {
  const dir = tmp(t, 'hosts');
  t.same(registriesOf(['docker.io/library/busybox:1.36', 'registry.k8s.io/pause:3.10', 'docker.io/x/y:1']), [
    'docker.io',
    'registry.k8s.io',
  ]);
  const files = await writeHostsToml(dir, '127.0.0.1:5555', ['docker.io', 'registry.k8s.io', 'localhost:5000']);
  t.same(
    files.map((f) => path.relative(dir, f)),
    ['docker.io/hosts.toml', 'registry.k8s.io/hosts.toml', 'localhost_5000_/hosts.toml', '_default/hosts.toml'],
  );
  const text = readFileSync(files[0], 'utf8');
  t.match(text, /^server = "http:\/\/127\.0\.0\.1:5555"$/m, 'the fallback server is the loopback one too');
  t.match(text, /^\[host\."http:\/\/127\.0\.0\.1:5555"\]\n {2}capabilities = \["pull", "resolve"\]$/m);
});
