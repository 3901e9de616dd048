// An OCI image archive (an image layout in a tar: oci-layout, index.json,
// blobs/sha256/…) written from a root filesystem folder, with no Docker engine:
// one uncompressed layer made by GNU tar with fixed names, order, owners and
// times, so the same folder always gives the same digests (and so the same
// image IDs in containerd). `ctr images import` reads the archive; the loopback
// registry (image-registry.ts) serves the same bytes from it by offset.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, readdirSync, statSync, type WriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { once } from 'node:events';
import { pipeline } from 'node:stream/promises';

export const MEDIA_TYPE = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar',
} as const;

/** The runtime part of an image config (the OCI image spec's `config` object). */
export interface ImageConfig {
  Entrypoint?: string[];
  Cmd?: string[];
  Env?: string[];
  WorkingDir?: string;
  User?: string;
}

export const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

function withPath(env: string[]): string[] {
  return env.some((e) => e.startsWith('PATH=')) ? env : [DEFAULT_PATH, ...env];
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

/** Where a blob's bytes sit inside the archive file. */
export interface BlobLocation extends Descriptor {
  offset: number;
}

export interface ArchiveInfo {
  /** Fully qualified references, e.g. docker.io/library/busybox:1.36. */
  refs: string[];
  manifest: Descriptor;
  /** The manifest's JSON text: what the registry serves (its digest is manifest.digest). */
  manifestJson: string;
  /** The config's digest: the image ID containerd and the kubelet report. */
  configDigest: string;
  /** config, manifest and layer, by digest. */
  blobs: Record<string, BlobLocation>;
  /** Bytes of the whole archive. */
  size: number;
}

const OCI_ARCH: Partial<Record<NodeJS.Architecture, string>> = { x64: 'amd64', arm64: 'arm64' };

export function ociArchitecture(): string {
  const arch = OCI_ARCH[process.arch];
  if (!arch) throw new Error(`no OCI architecture name for ${process.arch}`);
  return arch;
}

/** A reference's tag ("latest" when it has none; digests are not references we write). */
export function tagOf(ref: string): string {
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  return colon > slash ? ref.slice(colon + 1) : 'latest';
}

const sha256 = (data: Buffer | string) => 'sha256:' + createHash('sha256').update(data).digest('hex');

async function run(cmd: string, args: string[], cwd?: string): Promise<void> {
  const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const [code] = (await once(child, 'close')) as [number | null];
  if (code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${code}): ${stderr.trim()}`);
}

async function hashFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), hash);
  return 'sha256:' + hash.digest('hex');
}

/**
 * One tar layer of the folder's contents. GNU tar's own options make it reproducible: names sorted
 * bytewise, every time 0, owner and group 0 by number, hard links stored as files (so the result does not
 * depend on how the folder was copied); modes, symlinks and setuid bits are kept as they are.
 */
export async function writeLayer(rootfs: string, out: string): Promise<void> {
  const entries = readdirSync(rootfs).sort();
  if (entries.length === 0) throw new Error(`${rootfs} is empty`);
  await run('tar', [
    '--create',
    `--file=${out}`,
    '--format=gnu',
    '--sort=name',
    '--mtime=@0',
    '--owner=0',
    '--group=0',
    '--numeric-owner',
    '--hard-dereference',
    `--directory=${rootfs}`,
    '--',
    ...entries,
  ]);
}

// A ustar header for one entry of the archive (all names here are short, so no extensions are needed).
function tarHeader(name: string, size: number, type: '0' | '5'): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error(`tar name too long: ${name}`);
  const h = Buffer.alloc(512);
  const field = (offset: number, length: number, value: string) => h.write(value, offset, length, 'ascii');
  const octal = (offset: number, length: number, value: number) =>
    field(offset, length, value.toString(8).padStart(length - 1, '0') + '\0');
  field(0, 100, name);
  octal(100, 8, type === '5' ? 0o755 : 0o644);
  octal(108, 8, 0);
  octal(116, 8, 0);
  octal(124, 12, size);
  octal(136, 12, 0);
  field(148, 8, ' '.repeat(8));
  field(156, 1, type);
  field(257, 6, 'ustar\0');
  field(263, 2, '00');
  let sum = 0;
  for (const b of h) sum += b;
  field(148, 8, sum.toString(8).padStart(6, '0') + '\0 ');
  return h;
}

class TarWriter {
  offset = 0;
  constructor(private readonly out: WriteStream) {}

  private async write(chunk: Buffer): Promise<void> {
    this.offset += chunk.length;
    if (!this.out.write(chunk)) await once(this.out, 'drain');
  }

  private async pad(size: number): Promise<void> {
    if (size % 512) await this.write(Buffer.alloc(512 - (size % 512)));
  }

  async dir(name: string): Promise<void> {
    await this.write(tarHeader(name, 0, '5'));
  }

  /** Writes one file; returns the offset of its data. */
  async file(name: string, data: Buffer): Promise<number> {
    await this.write(tarHeader(name, data.length, '0'));
    const at = this.offset;
    await this.write(data);
    await this.pad(data.length);
    return at;
  }

  async fileFrom(name: string, source: string, size: number): Promise<number> {
    await this.write(tarHeader(name, size, '0'));
    const at = this.offset;
    for await (const chunk of createReadStream(source)) await this.write(chunk as Buffer);
    if (this.offset - at !== size) throw new Error(`${source} changed while it was archived`);
    await this.pad(size);
    return at;
  }

  async end(): Promise<void> {
    await this.write(Buffer.alloc(1024));
    this.out.end();
    await once(this.out, 'close');
  }
}

const json = (value: unknown) => Buffer.from(JSON.stringify(value));

/** Writes `out` (an OCI image layout in a tar) from the folder `rootfs`, tagged with each of `refs`. */
export async function writeImageArchive(
  rootfs: string,
  out: string,
  image: { refs: string[]; config: ImageConfig; createdBy?: string },
): Promise<ArchiveInfo> {
  if (image.refs.length === 0) throw new Error('an image needs at least one reference');
  const work = await mkdtemp(path.join(path.dirname(out), '.layer-'));
  try {
    const layerFile = path.join(work, 'layer.tar');
    await writeLayer(rootfs, layerFile);
    const layer: Descriptor = {
      mediaType: MEDIA_TYPE.layer,
      digest: await hashFile(layerFile),
      size: statSync(layerFile).size,
    };
    // Fixed times, and keys in one order: the config's digest (the image ID) depends on its inputs only.
    const configBytes = json({
      created: '1970-01-01T00:00:00Z',
      architecture: ociArchitecture(),
      os: 'linux',
      // PATH first, as Docker images have it, unless the image sets its own.
      config: { ...image.config, Env: withPath(image.config.Env ?? []) },
      rootfs: { type: 'layers', diff_ids: [layer.digest] },
      history: [{ created: '1970-01-01T00:00:00Z', created_by: image.createdBy ?? 'jfs-sidecar src/local/images.ts' }],
    });
    const config: Descriptor = { mediaType: MEDIA_TYPE.config, digest: sha256(configBytes), size: configBytes.length };
    const manifestBytes = json({ schemaVersion: 2, mediaType: MEDIA_TYPE.manifest, config, layers: [layer] });
    const manifest: Descriptor = {
      mediaType: MEDIA_TYPE.manifest,
      digest: sha256(manifestBytes),
      size: manifestBytes.length,
    };
    const index = json({
      schemaVersion: 2,
      mediaType: MEDIA_TYPE.index,
      manifests: image.refs.map((ref) => ({
        ...manifest,
        platform: { architecture: ociArchitecture(), os: 'linux' },
        // containerd's importer names the image by the first; the OCI layout's own name is the tag.
        annotations: { 'io.containerd.image.name': ref, 'org.opencontainers.image.ref.name': tagOf(ref) },
      })),
    });

    const tar = new TarWriter(createWriteStream(out));
    const blob = (d: Descriptor) => `blobs/sha256/${d.digest.slice('sha256:'.length)}`;
    await tar.file('oci-layout', json({ imageLayoutVersion: '1.0.0' }));
    await tar.file('index.json', index);
    await tar.dir('blobs/');
    await tar.dir('blobs/sha256/');
    const blobs: Record<string, BlobLocation> = {};
    blobs[config.digest] = { ...config, offset: await tar.file(blob(config), configBytes) };
    blobs[manifest.digest] = { ...manifest, offset: await tar.file(blob(manifest), manifestBytes) };
    blobs[layer.digest] = { ...layer, offset: await tar.fileFrom(blob(layer), layerFile, layer.size) };
    await tar.end();
    return {
      refs: image.refs,
      manifest,
      manifestJson: manifestBytes.toString(),
      configDigest: config.digest,
      blobs,
      size: statSync(out).size,
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
