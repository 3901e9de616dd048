// The images the local node runs, built from files on this machine (no registry,
// no Docker engine, nothing pulled): the pause image, busybox as users write it,
// the JuiceFS mount image under the project's default name and an older one to
// upgrade from, the project's own image, and csi-provisioner for the shipped
// manifests. Each is an OCI archive (./oci-archive.ts) in a cache outside the
// checkout, in a folder keyed by the hash of everything that goes into it, so a
// warm start only hashes its inputs (and remembers those hashes by file stat).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { DEFAULT_CE_MOUNT_IMAGE } from '../contract/keys.js';
import { PACKAGE_ROOT, PACKAGE_VERSION } from '../util/package-root.js';
import { ensureBinaries, type Component } from './control-plane.js';
import { writeImageArchive, type ArchiveInfo, type ImageConfig } from './oci-archive.js';

/** Bumped when the way an image is laid out changes, so old cache entries are not reused. */
const LAYOUT_VERSION = 1;
const STALE_MS = 24 * 3600 * 1000;

/** A name as users write it, made fully qualified as containerd and the kubelet store it. */
export function qualifiedRef(name: string): string {
  const slash = name.indexOf('/');
  const first = slash < 0 ? '' : name.slice(0, slash);
  const hasRegistry = first.includes('.') || first.includes(':') || first === 'localhost';
  let ref = hasRegistry ? name : slash < 0 ? `docker.io/library/${name}` : `docker.io/${name}`;
  const lastSlash = ref.lastIndexOf('/');
  if (!ref.includes('@') && ref.lastIndexOf(':') < lastSlash) ref += ':latest';
  return ref;
}

export const PAUSE_IMAGE = 'registry.k8s.io/pause:3.10';
export const BUSYBOX_IMAGES = ['docker.io/library/busybox:1.36', 'docker.io/library/busybox:latest'];
export const MOUNT_IMAGE = qualifiedRef(DEFAULT_CE_MOUNT_IMAGE);
/** The older mount image (test/env/go/juicefs-prev), for upgrades: its `juicefs version` differs. */
export const PREVIOUS_MOUNT_IMAGE = 'docker.io/juicedata/mount:ce-v1.2.0';
/**
 * A rebuild of the default mount image: the same juicefs and one file more (`/etc/jfs-sidecar-image`), so another
 * image digest. An in-place upgrade needs two clients that both hand their FUSE fd over (1.2.1+; the 1.2.0 image
 * cannot), and the Go module proxy here serves no other such release.
 */
export const NEXT_MOUNT_IMAGE = `${MOUNT_IMAGE}-next`;
/** npm usocket's compiled addon (node-gyp at `npm ci`), which the project image carries. */
const USOCKET_ADDON = path.join(PACKAGE_ROOT, 'node_modules/usocket/build/Release/uwrap.node');

/** The project's own image, as manifests/*.yaml name it (`jfs-sidecar:<version>`). */
export const PROJECT_IMAGE = qualifiedRef(`jfs-sidecar:${PACKAGE_VERSION}`);

export type ImageName =
  | 'pause'
  | 'busybox'
  | 'mount'
  | 'mount-prev'
  | 'mount-next'
  | 'jfs-sidecar'
  | 'csi-provisioner'
  | 'csi-resizer'
  | 'csi-snapshotter';
export const IMAGE_NAMES: ImageName[] = [
  'pause',
  'busybox',
  'mount',
  'mount-prev',
  'mount-next',
  'jfs-sidecar',
  'csi-provisioner',
  'csi-resizer',
  'csi-snapshotter',
];

export interface BuiltImage extends ArchiveInfo {
  name: ImageName;
  /** The OCI archive: `ctr -n k8s.io images import <archive>`. */
  archive: string;
  /** The key of its inputs (the cache folder's suffix). */
  key: string;
}

export interface Images {
  images: BuiltImage[];
  /** Archive paths, in IMAGE_NAMES order. */
  archives: string[];
  /** Every reference of every image. */
  refs: string[];
}

/** What goes into one image's root filesystem, in order; every source's content is part of the key. */
export type Step =
  | { dir: string; mode?: number }
  | { file: string; to: string; mode?: number }
  | { tree: string; to: string; skip?: string[] }
  | { link: string; to: string }
  | { text: string; to: string; mode?: number }
  /** gcc -static of one C file */
  | { cc: string; to: string }
  /** `npm ci --omit=dev` from this package.json and package-lock.json (the lock fixes every file) */
  | { npmProduction: string; to: string };

export interface ImageSpec {
  name: string;
  refs: string[];
  config: ImageConfig;
  steps: Step[];
}

/** Beside test/env/build.sh's bin/: $JFS_SIDECAR_CACHE or ~/.cache/jfs-sidecar, then images/. */
export function imagesCacheDir(): string {
  const xdg = process.env.XDG_CACHE_HOME ?? path.join(homedir(), '.cache');
  return path.join(process.env.JFS_SIDECAR_CACHE ?? path.join(xdg, 'jfs-sidecar'), 'images');
}

// ---- the inputs' hashes, remembered by stat so a warm start reads no large file ----

interface HashMemo {
  [file: string]: { size: number; mtimeMs: number; ino: number; hash: string };
}

export class Hasher {
  private memo: HashMemo = {};
  private dirty = false;
  constructor(private readonly memoFile?: string) {
    if (memoFile && existsSync(memoFile)) {
      try {
        this.memo = JSON.parse(readFileSync(memoFile, 'utf8')) as HashMemo;
      } catch {
        this.memo = {};
      }
    }
  }

  file(file: string): string {
    const st = statSync(file);
    const known = this.memo[file];
    if (known && known.size === st.size && known.mtimeMs === st.mtimeMs && known.ino === st.ino) return known.hash;
    const hash = createHash('sha256').update(readFileSync(file)).digest('hex');
    this.memo[file] = { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, hash };
    this.dirty = true;
    return hash;
  }

  /** Names, kinds, modes, link targets and contents of a folder, in a fixed order. */
  tree(dir: string, skip: string[] = []): string {
    const h = createHash('sha256');
    const walk = (rel: string) => {
      for (const name of readdirSync(path.join(dir, rel)).sort()) {
        const r = rel ? `${rel}/${name}` : name;
        if (skip.includes(r)) continue;
        const full = path.join(dir, r);
        const st = lstatSync(full);
        const mode = (st.mode & 0o7777).toString(8);
        if (st.isSymbolicLink()) h.update(`l ${r} ${readlinkSync(full)}\n`);
        else if (st.isDirectory()) {
          h.update(`d ${r} ${mode}\n`);
          walk(r);
        } else h.update(`f ${r} ${mode} ${this.file(full)}\n`);
      }
    };
    walk('');
    return h.digest('hex');
  }

  save(): void {
    if (!this.memoFile || !this.dirty) return;
    // Files that are gone (an old build's folder, a removed checkout) need no hash.
    for (const file of Object.keys(this.memo)) if (!existsSync(file)) delete this.memo[file];
    const tmp = `${this.memoFile}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(this.memo));
    renameSync(tmp, this.memoFile);
  }
}

const versions = new Map<string, string>();

/** The first line a tool prints about its version (once per process and binary). */
function toolVersion(cmd: string, args: string[]): string {
  const id = [cmd, ...args].join(' ');
  const known = versions.get(id);
  if (known !== undefined) return known;
  const res = spawnSync(cmd, args, { encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${res.stderr || res.error?.message}`);
  const version = res.stdout.split('\n')[0].trim();
  versions.set(id, version);
  return version;
}

/** npm's version from its package.json (`npm --version` costs a third of a second, every warm start). */
function npmVersion(): string {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const bin = path.join(dir, 'npm');
    if (!dir || !existsSync(bin)) continue;
    // npm's bin is a link to <npm>/bin/npm-cli.js
    const pkg = path.join(path.dirname(path.dirname(realpathSync(bin))), 'package.json');
    if (existsSync(pkg)) return (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version;
    break;
  }
  return toolVersion('npm', ['--version']);
}

/**
 * The key of a spec: its refs, config and steps with each source replaced by the hash of its content (and
 * mode), so two checkouts in different folders with the same files share one cache entry.
 */
export function specKey(spec: ImageSpec, hasher = new Hasher()): string {
  const steps = spec.steps.map((step) => {
    if ('file' in step)
      return { to: step.to, mode: step.mode ?? statSync(step.file).mode & 0o7777, sha256: hasher.file(step.file) };
    if ('tree' in step) return { to: step.to, tree: hasher.tree(step.tree, step.skip) };
    if ('cc' in step) return { to: step.to, cc: hasher.file(step.cc), gcc: toolVersion('gcc', ['--version']) };
    if ('npmProduction' in step) {
      const [pkg, lock] = ['package.json', 'package-lock.json'].map((f) =>
        hasher.file(path.join(step.npmProduction, f)),
      );
      return { to: step.to, pkg, lock, npm: npmVersion() };
    }
    return step;
  });
  const text = JSON.stringify({ v: LAYOUT_VERSION, refs: spec.refs, config: spec.config, steps });
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

// ---- laying out a root filesystem ----

function inRoot(rootfs: string, to: string): string {
  const target = path.join(rootfs, to);
  if (!target.startsWith(rootfs + path.sep)) throw new Error(`${to} is outside the image`);
  return target;
}

/** mkdir -p with mode 0755 whatever the umask, so modes (and digests) do not depend on the caller's shell. */
function mkdirs(dir: string, mode = 0o755): void {
  if (existsSync(dir)) return;
  mkdirs(path.dirname(dir));
  mkdirSync(dir);
  chmodSync(dir, mode);
}

function parentOf(target: string): void {
  mkdirs(path.dirname(target));
}

function run(cmd: string, args: string[], cwd?: string): void {
  const res = spawnSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (res.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')} failed (exit ${res.status}): ${res.stderr || res.error?.message}`);
}

export function populate(rootfs: string, steps: Step[]): void {
  for (const step of steps) {
    if ('dir' in step) {
      const target = inRoot(rootfs, step.dir);
      mkdirs(target);
      chmodSync(target, step.mode ?? 0o755);
    } else if ('file' in step) {
      const target = inRoot(rootfs, step.to);
      parentOf(target);
      copyFileSync(step.file, target);
      chmodSync(target, step.mode ?? statSync(step.file).mode & 0o7777);
    } else if ('tree' in step) {
      const target = inRoot(rootfs, step.to);
      parentOf(target);
      const skip = new Set((step.skip ?? []).map((s) => path.join(step.tree, s)));
      cpSync(step.tree, target, { recursive: true, verbatimSymlinks: true, filter: (src) => !skip.has(src) });
    } else if ('link' in step) {
      const target = inRoot(rootfs, step.to);
      parentOf(target);
      symlinkSync(step.link, target);
    } else if ('text' in step) {
      const target = inRoot(rootfs, step.to);
      parentOf(target);
      writeFileSync(target, step.text);
      chmodSync(target, step.mode ?? 0o644);
    } else if ('cc' in step) {
      const target = inRoot(rootfs, step.to);
      parentOf(target);
      // Stripped and static: the same source and compiler give the same bytes.
      run('gcc', ['-static', '-Os', '-s', '-Wall', '-o', target, step.cc]);
      chmodSync(target, 0o755);
    } else {
      const target = inRoot(rootfs, step.to);
      mkdirs(target);
      for (const f of ['package.json', 'package-lock.json'])
        copyFileSync(path.join(step.npmProduction, f), path.join(target, f));
      // From npm's cache where it has the tarballs; the lock file's integrity hashes fix the contents either way.
      run('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline'], target);
      rmSync(path.join(target, 'package-lock.json'));
    }
  }
}

// ---- the images ----

/** busybox-static and its applet links, with the files a shell and `id` expect. */
export function busyboxBase(busybox = '/bin/busybox'): Step[] {
  const res = spawnSync(busybox, ['--list-full'], { encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`${busybox} --list-full failed: install Debian's busybox-static`);
  const applets = res.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && l !== 'bin/busybox')
    .sort();
  const dirs = ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'usr/local/bin', 'etc', 'root', 'var/run', 'var/log'];
  return [
    ...dirs.map((d) => ({ dir: d })),
    { dir: 'tmp', mode: 0o1777 },
    { dir: 'proc' },
    { dir: 'sys' },
    { dir: 'dev' },
    { dir: 'home/nonroot' },
    { file: busybox, to: 'bin/busybox', mode: 0o755 },
    // Nothing for busybox-static; the libraries of a dynamic busybox if that is what /bin/busybox is.
    ...sharedLibraries(busybox),
    ...applets.map((a) => ({ link: '/bin/busybox', to: a })),
    {
      text:
        'root:x:0:0:root:/root:/bin/sh\n' +
        'nonroot:x:65532:65532:nonroot:/home/nonroot:/bin/false\n' +
        'nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
      to: 'etc/passwd',
    },
    { text: 'root:x:0:\nnonroot:x:65532:\nnogroup:x:65534:\n', to: 'etc/group' },
  ];
}

/** The shared libraries and the loader a dynamically linked binary needs, at the paths ldd gives. */
export function sharedLibraries(...binaries: string[]): Step[] {
  const libs = new Set<string>();
  for (const bin of binaries) {
    const res = spawnSync('ldd', [bin], { encoding: 'utf8' });
    // A static binary makes ldd exit 1 with "not a dynamic executable": nothing to copy.
    if (res.status !== 0) continue;
    for (const m of res.stdout.matchAll(/(\/\S+\.so[^\s]*)/g)) libs.add(m[1]);
  }
  // Copied as files (copyFileSync follows links) to the path the binary asks for.
  return [...libs].sort().map((lib) => ({ file: lib, to: lib.slice(1), mode: 0o755 }));
}

function fuseSteps(): Step[] {
  const fusermount3 = '/usr/bin/fusermount3';
  if (!existsSync(fusermount3)) throw new Error(`${fusermount3} is missing: install Debian's fuse3`);
  // setuid as on the host, for a client that falls back to it as a non-root user.
  return [
    { file: fusermount3, to: 'usr/bin/fusermount3', mode: statSync(fusermount3).mode & 0o7777 },
    { link: 'fusermount3', to: 'usr/bin/fusermount' },
  ];
}

function juicefsSteps(juicefs: string): Step[] {
  return [
    { file: juicefs, to: 'usr/local/bin/juicefs', mode: 0o755 },
    { link: '/usr/local/bin/juicefs', to: 'bin/juicefs' },
  ];
}

/** The mount image's tag for a juicefs binary, from its own `juicefs version` ("ce-v1.3.1"). */
export function juicefsTag(binary: string): string {
  const m = /version (\d+\.\d+\.\d+)/.exec(toolVersion(binary, ['version']));
  if (!m) throw new Error(`cannot tell the version of ${binary}`);
  return `ce-v${m[1]}`;
}

function mountSpec(juicefs: string, ref: string): ImageSpec {
  const tag = juicefsTag(juicefs);
  // The name says the version: a module bump must move the name (and what uses it) too.
  if (`docker.io/juicedata/mount:${tag}` !== ref)
    throw new Error(`${juicefs} is juicefs ${tag}, not the one of ${ref}`);
  return {
    name: `mount-${tag}`,
    refs: [ref],
    config: { Cmd: ['sh'] },
    steps: [
      ...busyboxBase(),
      ...juicefsSteps(juicefs),
      ...fuseSteps(),
      ...sharedLibraries(juicefs, '/usr/bin/fusermount3'),
    ],
  };
}

/** The build.sh binaries each image holds: asked for in one build.sh run per ensureImages. */
const NEEDS: Record<ImageName, Component[]> = {
  pause: [],
  busybox: [],
  mount: ['juicefs'],
  'mount-prev': ['juicefs-prev'],
  'mount-next': ['juicefs'],
  'jfs-sidecar': ['juicefs'],
  'csi-provisioner': ['csi-provisioner'],
  'csi-resizer': ['csi-resizer'],
  'csi-snapshotter': ['csi-snapshotter'],
};
const binaries: Partial<Record<Component, string>> = {};

function binary(c: Component): string {
  return (binaries[c] ??= ensureBinaries([c])[c]);
}

/** A Kubernetes CSI sidecar (csi-provisioner, -resizer, -snapshotter) as its image is named, with build.sh's binary. */
function sigStorageSpec(name: 'csi-provisioner' | 'csi-resizer' | 'csi-snapshotter'): ImageSpec {
  const bin = binary(name);
  // build.sh keys its folder by the module's version: csi-provisioner-v6.3.0-<pins>.
  const version = new RegExp(`${name}-(v\\d+\\.\\d+\\.\\d+)-`).exec(bin)?.[1];
  if (!version) throw new Error(`cannot tell the ${name} version from ${bin}`);
  return {
    name,
    refs: [`registry.k8s.io/sig-storage/${name}:${version}`],
    config: { Entrypoint: [`/${name}`] },
    steps: [{ file: bin, to: name, mode: 0o755 }],
  };
}

/** Each image's spec, made on demand (the binaries it needs are built by test/env/build.sh when missing). */
export const IMAGE_SPECS: Record<ImageName, () => ImageSpec> = {
  pause: () => ({
    name: 'pause',
    refs: [PAUSE_IMAGE],
    // As the upstream pause image: an unprivileged numeric user (no /etc/passwd needed).
    config: { Entrypoint: ['/pause'], User: '65535:65535' },
    steps: [{ cc: path.join(PACKAGE_ROOT, 'src/local/pause.c'), to: 'pause' }],
  }),
  busybox: () => ({ name: 'busybox', refs: BUSYBOX_IMAGES, config: { Cmd: ['sh'] }, steps: busyboxBase() }),
  mount: () => mountSpec(binary('juicefs'), MOUNT_IMAGE),
  'mount-prev': () => mountSpec(binary('juicefs-prev'), PREVIOUS_MOUNT_IMAGE),
  'mount-next': () => {
    const base = mountSpec(binary('juicefs'), MOUNT_IMAGE);
    return {
      ...base,
      name: `${base.name}-next`,
      refs: [NEXT_MOUNT_IMAGE],
      steps: [...base.steps, { text: 'next\n', to: 'etc/jfs-sidecar-image' }],
    };
  },
  'jfs-sidecar': () => {
    if (!existsSync(path.join(PACKAGE_ROOT, 'dist/src/cli/main.js')))
      throw new Error('the project image ships dist/: run `npm run build` first');
    const juicefs = binary('juicefs');
    return {
      name: 'jfs-sidecar',
      refs: [PROJECT_IMAGE],
      // As the Dockerfile: node runs the CLI from /app as the unprivileged 65532 unless a manifest says root.
      config: { Entrypoint: ['node', '/app/dist/src/cli/main.js'], WorkingDir: '/app', User: '65532:65532' },
      steps: [
        ...busyboxBase(),
        { file: process.execPath, to: 'usr/local/bin/node', mode: 0o755 },
        ...sharedLibraries(process.execPath, juicefs, '/usr/bin/fusermount3', USOCKET_ADDON),
        ...juicefsSteps(juicefs),
        ...fuseSteps(),
        { npmProduction: PACKAGE_ROOT, to: 'app' },
        // `npm ci --ignore-scripts` leaves usocket's addon (the FUSE fd holder, ADR 0016) unbuilt: the checkout's,
        // compiled by its own `npm ci` against this Node, is the one the image's node loads.
        { file: USOCKET_ADDON, to: `app/${path.relative(PACKAGE_ROOT, USOCKET_ADDON)}`, mode: 0o755 },
        { file: path.join(PACKAGE_ROOT, 'package.json'), to: 'app/package.json', mode: 0o644 },
        { tree: path.join(PACKAGE_ROOT, 'proto'), to: 'app/proto' },
        // The harness (src/local) is not shipped, as in the Dockerfile.
        { tree: path.join(PACKAGE_ROOT, 'dist/src'), to: 'app/dist/src', skip: ['local'] },
      ],
    };
  },
  'csi-provisioner': () => sigStorageSpec('csi-provisioner'),
  'csi-resizer': () => sigStorageSpec('csi-resizer'),
  'csi-snapshotter': () => sigStorageSpec('csi-snapshotter'),
};

// ---- the cache ----

interface CacheEntry extends ArchiveInfo {
  key: string;
}

/** Builds one image into `cacheDir/<name>-<key>/image.tar` unless it is there already. */
export async function buildImage(
  spec: ImageSpec,
  cacheDir: string,
  opts: { hasher?: Hasher; log?: (msg: string) => void } = {},
): Promise<ArchiveInfo & { archive: string; key: string; built: boolean }> {
  const key = specKey(spec, opts.hasher);
  const folder = path.join(cacheDir, `${spec.name}-${key}`);
  const meta = path.join(folder, 'image.json');
  const archive = path.join(folder, 'image.tar');
  if (existsSync(meta) && existsSync(archive)) {
    const entry = JSON.parse(readFileSync(meta, 'utf8')) as CacheEntry;
    const now = new Date();
    utimesSync(folder, now, now); // last used: see the pruning below
    return { ...entry, archive, key, built: false };
  }
  mkdirSync(cacheDir, { recursive: true });
  const started = Date.now();
  // Built beside its final place and renamed in: a reader sees a whole entry or none, and two builders
  // of the same key both end with the same bytes.
  const work = await mkdtemp(path.join(cacheDir, `.${spec.name}-`));
  try {
    const rootfs = path.join(work, 'rootfs');
    mkdirSync(rootfs, { mode: 0o755 });
    chmodSync(rootfs, 0o755);
    populate(rootfs, spec.steps);
    const info = await writeImageArchive(rootfs, path.join(work, 'image.tar'), {
      refs: spec.refs,
      config: spec.config,
    });
    rmSync(rootfs, { recursive: true, force: true });
    writeFileSync(path.join(work, 'image.json'), JSON.stringify({ ...info, key } satisfies CacheEntry, null, 1));
    try {
      renameSync(work, folder);
    } catch (err) {
      if (!existsSync(meta)) throw err;
    }
    // Builds of the same image not used for a day go: other checkouts (another dist/) may still use theirs.
    for (const old of readdirSync(cacheDir)) {
      const other = path.join(cacheDir, old);
      if (old.startsWith(`${spec.name}-`) && other !== folder && statSync(other).mtimeMs < Date.now() - STALE_MS)
        rmSync(other, { recursive: true, force: true });
    }
    opts.log?.(
      `built ${spec.refs.join(', ')} (${(info.size / 1e6).toFixed(1)} MB) in ${((Date.now() - started) / 1000).toFixed(1)}s`,
    );
    return { ...info, archive, key, built: true };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

export interface EnsureImagesOptions {
  /** Default: ~/.cache/jfs-sidecar/images (or $JFS_SIDECAR_CACHE/images). */
  cacheDir?: string;
  /** Default: all of IMAGE_NAMES. */
  only?: ImageName[];
  /** Progress lines; default stderr. */
  log?: (msg: string) => void;
}

/**
 * The local images, built where missing or out of date. The project image needs `npm run build` first
 * (it ships dist/); the mount images use test/env/build.sh's juicefs builds.
 */
export async function ensureImages(opts: EnsureImagesOptions = {}): Promise<Images> {
  const cacheDir = opts.cacheDir ?? imagesCacheDir();
  const log = opts.log ?? ((msg: string) => process.stderr.write(`[images] ${msg}\n`));
  mkdirSync(cacheDir, { recursive: true });
  const hasher = new Hasher(path.join(cacheDir, 'input-hashes.json'));
  const images: BuiltImage[] = [];
  const names = IMAGE_NAMES.filter((n) => !opts.only || opts.only.includes(n));
  // build.sh checks (or builds) them all at once; a later change of its output is seen by the next process.
  const components = [...new Set(names.flatMap((n) => NEEDS[n]))];
  if (components.length) Object.assign(binaries, ensureBinaries(components));
  try {
    for (const name of names) {
      const { built: _built, ...image } = await buildImage(IMAGE_SPECS[name](), cacheDir, { hasher, log });
      images.push({ ...image, name });
    }
  } finally {
    hasher.save();
  }
  return {
    images,
    archives: images.map((i) => i.archive),
    refs: images.flatMap((i) => i.refs),
  };
}
