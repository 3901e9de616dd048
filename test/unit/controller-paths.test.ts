// The controller's paths on a plain folder standing in for the mounted JuiceFS volume (fast; the real client and
// csi-provisioner/csi-resizer run in test/e2e/provisioner.test.ts): the `subdir` mount option, the reference's PVs
// with no record, ROX, and snapshots.
import type { V1PersistentVolume } from '@kubernetes/client-node';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { controllerService } from '../../src/controller/controller-service.js';
import { readRecord } from '../../src/controller/registry.js';
import { Code, CsiError } from '../../src/csi/server.js';
import type { JuicefsVolumes } from '../../src/juicefs/volume.js';

const SECRETS = { name: 'vol', metaurl: 'sqlite3:///tmp/none.db', storage: 'file', bucket: '/tmp/none' };
const CAP = { mount: { mount_flags: [] as string[] }, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } };
const UID_NAME = 'pvc-0a1b2c3d-1111-2222-3333-444455556666';

function world(
  t: Test,
  pvs: V1PersistentVolume[] = [],
  config?: { enableSetQuota: boolean; enableControllerSetQuota: boolean },
) {
  const root = mkdtempSync(path.join(tmpdir(), 'jfs-ctl-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const quotas = new Map<string, number>();
  const volumes = {
    withMount: async <T>(_c: unknown, fn: (root: string) => Promise<T>) => fn(root),
    setQuota: async (_c: unknown, dir: string, bytes: number) => {
      const rounded = Math.ceil(bytes / 2 ** 30) * 2 ** 30;
      quotas.set(dir, rounded);
      return rounded;
    },
    deleteQuota: async (_c: unknown, dir: string) => void quotas.delete(dir),
    removeTree: async (r: string, dir: string) => rm(path.join(r, dir), { recursive: true, force: true }),
    // `juicefs clone` fails on an existing destination; so does this.
    cloneTree: async (r: string, from: string, to: string) =>
      cp(path.join(r, from), path.join(r, to), { recursive: true, errorOnExist: true, force: false }),
  } as unknown as JuicefsVolumes;
  const service = controllerService({
    volumes,
    version: 'test',
    log: pino({ level: 'silent' }),
    getPv: async (name) => pvs.find((p) => p.metadata?.name === name),
    listPvs: async () => pvs,
    ...(config && { config: () => config }),
  });
  const call = (rpc: string, req: Record<string, unknown>) =>
    (service[rpc] as (r: Record<string, unknown>) => Promise<Record<string, unknown>>)(req);
  return { root, quotas, call };
}

function referencePv(name: string, subPath: string, mountOptions?: string[]): V1PersistentVolume {
  return {
    metadata: { name },
    spec: {
      capacity: { storage: '10Gi' },
      ...(mountOptions ? { mountOptions } : {}),
      csi: { driver: 'csi.juicefs.com', volumeHandle: name, volumeAttributes: { subPath } },
    },
  };
}

const csiCode = async (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (err: unknown) => (err instanceof CsiError ? err.code : err),
  );

t.test('subdir= in the StorageClass mountOptions: directory, quota and delete under it', async (t) => {
  const w = world(t);
  const cap = { ...CAP, mount: { mount_flags: ['writeback', 'subdir=team-x'] } };
  const res = await w.call('CreateVolume', {
    name: 'pvc-a',
    volume_capabilities: [cap],
    capacity_range: { required_bytes: String(2 * 2 ** 30) },
    secrets: SECRETS,
  });
  const volume = res.volume as { volume_context: Record<string, string> };
  t.equal(volume.volume_context.subPath, 'pvc-a', 'subPath stays relative to the subdir the mount joins in front');
  t.ok(existsSync(path.join(w.root, 'team-x/pvc-a')), 'the directory is under team-x');
  t.notOk(existsSync(path.join(w.root, 'pvc-a')), 'and not at the root');
  t.same([...w.quotas], [['team-x/pvc-a', 2 * 2 ** 30]], 'the quota is on that directory');
  t.equal((await readRecord(w.root, 'pvc-a'))?.subdir, 'team-x/pvc-a');
  await w.call('DeleteVolume', { volume_id: 'pvc-a', secrets: SECRETS });
  t.notOk(existsSync(path.join(w.root, 'team-x/pvc-a')), 'deleted there');
  t.same([...w.quotas], [], 'with its quota');

  const viaAttribute = await w.call('CreateVolume', {
    name: 'pvc-b',
    volume_capabilities: [CAP],
    parameters: { mountOptions: 'subdir=team-y' },
    secrets: SECRETS,
  });
  t.ok(viaAttribute.volume);
  t.ok(existsSync(path.join(w.root, 'team-y/pvc-b')), 'the mountOptions parameter counts too');
  t.equal(
    await csiCode(
      w.call('CreateVolume', {
        name: 'pvc-c',
        volume_capabilities: [{ ...CAP, mount: { mount_flags: ['subdir=../../etc'] } }],
        secrets: SECRETS,
      }),
    ),
    Code.INVALID_ARGUMENT,
    'a subdir escaping the volume is refused',
  );
});

t.test('ROX: refused without a pathPattern, as the reference refuses it', async (t) => {
  const w = world(t);
  const rox = { ...CAP, access_mode: { mode: 'MULTI_NODE_READER_ONLY' } };
  t.equal(
    await csiCode(w.call('CreateVolume', { name: 'ro', volume_capabilities: [rox], secrets: SECRETS })),
    Code.INVALID_ARGUMENT,
  );
  t.notOk(existsSync(path.join(w.root, 'ro')), 'nothing created');
  const res = await w.call('CreateVolume', {
    name: 'ro',
    volume_capabilities: [rox],
    parameters: {
      pathPattern: 'datasets/${.pvc.name}',
      'csi.storage.k8s.io/pvc/name': 'imagenet',
      'csi.storage.k8s.io/pvc/namespace': 'ml',
    },
    secrets: SECRETS,
  });
  t.equal((res.volume as { volume_context: Record<string, string> }).volume_context.subPath, 'datasets/imagenet');
});

t.test("a PV the reference provisioned (no record): expanded, then deleted at its PV's path", async (t) => {
  const legacy = referencePv(UID_NAME, UID_NAME, ['subdir=team-x']);
  const w = world(t, [legacy]);
  mkdirSync(path.join(w.root, 'team-x', UID_NAME), { recursive: true });
  writeFileSync(path.join(w.root, 'team-x', UID_NAME, 'data'), 'x');
  await w.call('ValidateVolumeCapabilities', { volume_id: UID_NAME, volume_capabilities: [CAP], secrets: SECRETS });
  const expanded = await w.call('ControllerExpandVolume', {
    volume_id: UID_NAME,
    capacity_range: { required_bytes: String(20 * 2 ** 30) },
    secrets: SECRETS,
  });
  t.equal(expanded.capacity_bytes, String(20 * 2 ** 30));
  t.same([...w.quotas], [[`team-x/${UID_NAME}`, 20 * 2 ** 30]], 'the quota on the directory the pods mount');
  t.same(
    await readRecord(w.root, UID_NAME),
    { id: UID_NAME, subdir: `team-x/${UID_NAME}`, capacityBytes: 20 * 2 ** 30, createdAt: '' },
    'its record written on first touch',
  );
  await w.call('DeleteVolume', { volume_id: UID_NAME, secrets: SECRETS });
  t.notOk(existsSync(path.join(w.root, 'team-x', UID_NAME)), 'its data deleted');
  t.equal(await readRecord(w.root, UID_NAME), undefined);

  t.equal(
    await csiCode(
      w.call('ControllerExpandVolume', {
        volume_id: 'pvc-0a1b2c3d-1111-2222-3333-000000000000',
        capacity_range: { required_bytes: '1' },
        secrets: SECRETS,
      }),
    ),
    Code.NOT_FOUND,
    'a volume with no record, no PV and no directory is not found',
  );
});

t.test('a PV with no record and no PV object: the reference deletes the directory of its name', async (t) => {
  const w = world(t);
  mkdirSync(path.join(w.root, UID_NAME));
  mkdirSync(path.join(w.root, 'sanity-kept'));
  await w.call('DeleteVolume', { volume_id: UID_NAME, secrets: SECRETS });
  t.notOk(existsSync(path.join(w.root, UID_NAME)), 'removed');
  await w.call('DeleteVolume', { volume_id: 'sanity-kept', secrets: SECRETS });
  t.ok(existsSync(path.join(w.root, 'sanity-kept')), "a name it does not give is nobody else's to delete");
});

t.test('a directory another PV mounts is kept, recorded or not', async (t) => {
  const other = referencePv('pvc-0a1b2c3d-1111-2222-3333-777777777777', 'shared/x');
  const w = world(t, [other]);
  await w.call('CreateVolume', {
    name: 'mine',
    volume_capabilities: [CAP],
    parameters: {
      pathPattern: 'shared/${.pvc.name}',
      'csi.storage.k8s.io/pvc/name': 'x',
      'csi.storage.k8s.io/pvc/namespace': 'ns',
    },
    secrets: SECRETS,
  });
  await w.call('DeleteVolume', { volume_id: 'mine', secrets: SECRETS });
  t.ok(existsSync(path.join(w.root, 'shared/x')), "kept: the reference's PV with no record mounts it");
  t.equal(await readRecord(w.root, 'mine'), undefined, 'the record is gone');
});

t.test('snapshots: taken, listed in pages, restored, deleted; idempotent by name', async (t) => {
  const w = world(t);
  const create = (name: string, extra: Record<string, unknown> = {}) =>
    w.call('CreateVolume', {
      name,
      volume_capabilities: [CAP],
      capacity_range: { required_bytes: String(2 * 2 ** 30) },
      secrets: SECRETS,
      ...extra,
    });
  await create('src');
  writeFileSync(path.join(w.root, 'src/a.txt'), 'one');
  const snap = (name: string, source = 'src') =>
    w
      .call('CreateSnapshot', { name, source_volume_id: source, secrets: SECRETS })
      .then(
        (r) =>
          r.snapshot as { snapshot_id: string; ready_to_use: boolean; size_bytes: string; source_volume_id: string },
      );
  const s1 = await snap('snap-1');
  t.match(s1, {
    snapshot_id: 'snap-1|src',
    ready_to_use: true,
    size_bytes: String(2 * 2 ** 30),
    source_volume_id: 'src',
  });
  t.equal(readFileSync(path.join(w.root, '.snapshots/src/snap-1/a.txt'), 'utf8'), 'one', "the reference's layout");
  writeFileSync(path.join(w.root, 'src/a.txt'), 'two');
  t.same(await snap('snap-1'), s1, 'the same name and source: the same snapshot');
  t.equal(readFileSync(path.join(w.root, '.snapshots/src/snap-1/a.txt'), 'utf8'), 'one', 'not taken again');
  await create('other');
  t.equal(await csiCode(snap('snap-1', 'other')), Code.ALREADY_EXISTS, 'the same name of another volume');
  t.equal(await csiCode(snap('snap-x', 'missing')), Code.NOT_FOUND, 'no such source volume');
  await snap('snap-2');
  await snap('snap-3', 'other');

  const list = (req: Record<string, unknown> = {}) =>
    w.call('ListSnapshots', { secrets: SECRETS, ...req }) as Promise<{
      entries: { snapshot: { snapshot_id: string } }[];
      next_token: string;
    }>;
  const ids = (r: { entries: { snapshot: { snapshot_id: string } }[] }) => r.entries.map((e) => e.snapshot.snapshot_id);
  t.same(ids(await list()), ['snap-1|src', 'snap-2|src', 'snap-3|other'], 'all, oldest first');
  t.same(ids(await list({ source_volume_id: 'other' })), ['snap-3|other']);
  t.same(ids(await list({ snapshot_id: 'snap-2|src' })), ['snap-2|src']);
  t.same(ids(await list({ snapshot_id: 'snap-2|other' })), [], 'a handle whose source differs');
  t.same(ids(await list({ snapshot_id: 'no-handle' })), []);
  const first = await list({ max_entries: 2 });
  t.same(ids(first), ['snap-1|src', 'snap-2|src']);
  t.equal(first.next_token, '2');
  t.same(ids(await list({ starting_token: first.next_token })), ['snap-3|other']);
  t.equal(await csiCode(list({ starting_token: 'x' })), Code.ABORTED, 'a token not ours');
  t.equal(await csiCode(list({ starting_token: '9' })), Code.ABORTED, 'a token past the end');

  const restored = await create('copy', {
    volume_content_source: { type: 'snapshot', snapshot: { snapshot_id: 'snap-1|src' } },
  });
  t.match(restored.volume, { content_source: { snapshot: { snapshot_id: 'snap-1|src' } } }, 'content source returned');
  t.equal(readFileSync(path.join(w.root, 'copy/a.txt'), 'utf8'), 'one', 'restored as the snapshot was');
  t.same(
    [...w.quotas].find(([d]) => d === 'copy'),
    ['copy', 2 * 2 ** 30],
    'with its quota',
  );
  t.ok(
    await create('copy', { volume_content_source: { type: 'snapshot', snapshot: { snapshot_id: 'snap-1|src' } } }),
    'a retry is the same volume',
  );
  t.equal(
    await csiCode(
      create('copy', { volume_content_source: { type: 'snapshot', snapshot: { snapshot_id: 'snap-2|src' } } }),
    ),
    Code.ALREADY_EXISTS,
    'the same name from another snapshot',
  );
  t.equal(
    await csiCode(
      create('nope', { volume_content_source: { type: 'snapshot', snapshot: { snapshot_id: 'gone|src' } } }),
    ),
    Code.NOT_FOUND,
  );
  t.equal(
    await csiCode(
      create('small', {
        capacity_range: { required_bytes: String(2 ** 30) },
        volume_content_source: { type: 'snapshot', snapshot: { snapshot_id: 'snap-1|src' } },
      }),
    ),
    Code.OUT_OF_RANGE,
    'smaller than the volume the snapshot is of',
  );
  t.equal(
    await csiCode(create('clone', { volume_content_source: { type: 'volume', volume: { volume_id: 'src' } } })),
    Code.INVALID_ARGUMENT,
    'cloning a volume is not offered',
  );

  for (const id of ['snap-1|src', 'snap-2|src', 'snap-3|other', 'snap-1|src', 'not-a-handle'])
    await w.call('DeleteSnapshot', { snapshot_id: id, secrets: SECRETS });
  t.same(ids(await list()), [], 'all deleted (twice over, and a bad handle, without error)');
  t.notOk(existsSync(path.join(w.root, '.snapshots')), 'the snapshots folder goes with the last one');
  t.equal(readFileSync(path.join(w.root, 'copy/a.txt'), 'utf8'), 'one', 'a restored volume is its own');
});

t.test('a snapshot the reference took (no record) restores and deletes', async (t) => {
  const w = world(t);
  mkdirSync(path.join(w.root, '.snapshots/pvc-old/snapshot-1'), { recursive: true });
  writeFileSync(path.join(w.root, '.snapshots/pvc-old/snapshot-1/f'), 'old');
  await w.call('CreateVolume', {
    name: 'new',
    volume_capabilities: [CAP],
    volume_content_source: { type: 'snapshot', snapshot: { snapshot_id: 'snapshot-1|pvc-old' } },
    secrets: SECRETS,
  });
  t.equal(readFileSync(path.join(w.root, 'new/f'), 'utf8'), 'old');
  await w.call('DeleteSnapshot', { snapshot_id: 'snapshot-1|pvc-old', secrets: SECRETS });
  t.notOk(existsSync(path.join(w.root, '.snapshots')), 'deleted');
  t.equal(
    await csiCode(
      w.call('CreateVolume', {
        name: '.snapshots',
        volume_capabilities: [CAP],
        secrets: SECRETS,
      }),
    ),
    Code.INVALID_ARGUMENT,
    'the snapshots folder is no volume directory',
  );
});

t.test("the reference's quota switches: the marker tells the sidecar whether the controller set one", async (t) => {
  const req = (name: string) => ({
    name,
    volume_capabilities: [CAP],
    capacity_range: { required_bytes: String(2 * 2 ** 30) },
    secrets: SECRETS,
  });
  const contextOf = (r: Record<string, unknown>) =>
    (r.volume as { volume_context: Record<string, string> }).volume_context;
  const on = world(t);
  t.equal(
    contextOf(await on.call('CreateVolume', req('a')))['juicefs/controller-quota-set'],
    'true',
    'default: set, marked',
  );
  t.same([...on.quotas.keys()], ['a']);

  const sidecarSets = world(t, [], { enableSetQuota: true, enableControllerSetQuota: false });
  const b = contextOf(await sidecarSets.call('CreateVolume', req('b')));
  t.notOk('juicefs/controller-quota-set' in b, 'enableControllerSetQuota: false: not marked (the sidecar sets it)');
  t.same([...sidecarSets.quotas.keys()], [], 'and not set here');

  const off = world(t, [], { enableSetQuota: false, enableControllerSetQuota: true });
  t.notOk('juicefs/controller-quota-set' in contextOf(await off.call('CreateVolume', req('c'))));
  t.same([...off.quotas.keys()], [], 'enableSetQuota: false: none');
  const grown = await off.call('ControllerExpandVolume', {
    volume_id: 'c',
    capacity_range: { required_bytes: String(5 * 2 ** 30) },
    secrets: SECRETS,
  });
  t.equal(grown.capacity_bytes, String(5 * 2 ** 30), 'an expansion succeeds and records the size');
  t.same([...off.quotas.keys()], [], 'with no quota');
  t.equal((await readRecord(off.root, 'c'))?.capacityBytes, 5 * 2 ** 30);
});
