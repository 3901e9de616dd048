// A read-only registry on 127.0.0.1 serving the local images (./images.ts), so
// that a pull (imagePullPolicy: Always, the default for `:latest` and untagged
// images) works with no network: the subset of the OCI Distribution API that
// containerd's resolver and fetcher use (GET/HEAD /v2/, manifests by tag or
// digest, blobs by digest, single byte ranges), answered from the archives'
// bytes by offset. containerd reaches it through hosts.toml files
// (writeHostsToml) in the folder its CRI `registry.config_path` names.
//
// node:http rather than Fastify: five read-only routes that stream file ranges
// with exact Content-Length on HEAD, and nothing else (no body parsing, hooks or
// plugins) to configure or to get in the way.
import { createReadStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { ArchiveInfo, BlobLocation } from './oci-archive.js';
import { tagOf } from './oci-archive.js';

export interface RegistryImage extends ArchiveInfo {
  archive: string;
}

export interface ImageRegistry {
  /** host:port, e.g. 127.0.0.1:40123 */
  host: string;
  port: number;
  url: string;
  close(): Promise<void>;
}

interface Repository {
  tags: Map<string, RegistryImage>;
  byDigest: Map<string, RegistryImage>;
}

/** docker.io/library/busybox:1.36 → [docker.io, library/busybox] */
export function splitRef(ref: string): { registry: string; repository: string; tag: string } {
  const slash = ref.indexOf('/');
  if (slash < 0) throw new Error(`${ref} is not fully qualified`);
  const tag = tagOf(ref);
  const name = ref.endsWith(`:${tag}`) ? ref.slice(0, -tag.length - 1) : ref;
  return { registry: name.slice(0, slash), repository: name.slice(slash + 1), tag };
}

const API_VERSION = { 'Docker-Distribution-API-Version': 'registry/2.0' };

function error(res: ServerResponse, status: number, code: string, message: string, head: boolean): void {
  const body = JSON.stringify({ errors: [{ code, message }] });
  res.writeHead(status, {
    ...API_VERSION,
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(head ? undefined : body);
}

/** One `bytes=a-b` or `bytes=a-` range within size; undefined for none, null for one we cannot serve. */
function parseRange(header: string | undefined, size: number): { start: number; end: number } | undefined | null {
  if (!header) return undefined;
  const m = /^bytes=(\d+)-(\d*)$/.exec(header.trim());
  if (!m) return null;
  const start = Number(m[1]);
  const end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
  return start <= end ? { start, end } : null;
}

function serveBlob(req: IncomingMessage, res: ServerResponse, image: RegistryImage, blob: BlobLocation): void {
  const head = req.method === 'HEAD';
  const range = parseRange(req.headers.range, blob.size);
  if (range === null) {
    res.writeHead(416, { ...API_VERSION, 'Content-Range': `bytes */${blob.size}` });
    res.end();
    return;
  }
  const { start, end } = range ?? { start: 0, end: blob.size - 1 };
  res.writeHead(range ? 206 : 200, {
    ...API_VERSION,
    'Content-Type': 'application/octet-stream',
    'Content-Length': end - start + 1,
    'Docker-Content-Digest': blob.digest,
    'Accept-Ranges': 'bytes',
    ...(range ? { 'Content-Range': `bytes ${start}-${end}/${blob.size}` } : {}),
  });
  if (head || blob.size === 0) {
    res.end();
    return;
  }
  const stream = createReadStream(image.archive, { start: blob.offset + start, end: blob.offset + end });
  stream.on('error', (err) => res.destroy(err));
  stream.pipe(res);
}

/**
 * Serves the images on 127.0.0.1 (port 0: any free one). A name is looked up with its registry: containerd
 * sends it as `?ns=docker.io` when it pulls docker.io/… through a configured host; without `ns`, the
 * path's name is the full one (127.0.0.1:PORT/docker.io/library/busybox:latest).
 */
export interface RegistryOptions {
  /** Default 0: any free port. */
  port?: number;
  /** Called once per answered request (tests, debugging). */
  onRequest?: (r: { method: string; url: string; status: number }) => void;
}

export async function startImageRegistry(images: RegistryImage[], opts: RegistryOptions = {}): Promise<ImageRegistry> {
  const repos = new Map<string, Repository>();
  for (const image of images)
    for (const ref of image.refs) {
      const { registry, repository, tag } = splitRef(ref);
      const key = `${registry}/${repository}`;
      const repo = repos.get(key) ?? { tags: new Map(), byDigest: new Map() };
      repo.tags.set(tag, image);
      for (const digest of Object.keys(image.blobs)) repo.byDigest.set(digest, image);
      repos.set(key, repo);
    }

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const head = req.method === 'HEAD';
    if (req.method !== 'GET' && !head) return error(res, 405, 'UNSUPPORTED', 'this registry is read-only', false);
    const url = new URL(req.url ?? '/', 'http://registry');
    if (url.pathname === '/v2/' || url.pathname === '/v2') {
      res.writeHead(200, { ...API_VERSION, 'Content-Type': 'application/json', 'Content-Length': 2 });
      return res.end(head ? undefined : '{}');
    }
    const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(url.pathname);
    if (!m) return error(res, 404, 'NOT_FOUND', `no route ${url.pathname}`, head);
    const [, name, kind, reference] = m;
    const ns = url.searchParams.get('ns');
    const repo = repos.get(ns ? `${ns}/${name}` : name);
    if (!repo) return error(res, 404, 'NAME_UNKNOWN', `repository ${ns ? `${ns}/` : ''}${name} not known`, head);
    if (kind === 'blobs') {
      const image = repo.byDigest.get(reference);
      if (!image) return error(res, 404, 'BLOB_UNKNOWN', `blob ${reference} not known`, head);
      return serveBlob(req, res, image, image.blobs[reference]);
    }
    const image = reference.startsWith('sha256:') ? repo.byDigest.get(reference) : repo.tags.get(reference);
    if (!image || (reference.startsWith('sha256:') && reference !== image.manifest.digest))
      return error(res, 404, 'MANIFEST_UNKNOWN', `manifest ${reference} not known`, head);
    const body = Buffer.from(image.manifestJson);
    res.writeHead(200, {
      ...API_VERSION,
      'Content-Type': image.manifest.mediaType,
      'Content-Length': body.length,
      'Docker-Content-Digest': image.manifest.digest,
    });
    res.end(head ? undefined : body);
  };

  const server = createServer((req, res) => {
    if (opts.onRequest)
      res.once('finish', () =>
        opts.onRequest?.({ method: req.method ?? '', url: req.url ?? '', status: res.statusCode }),
      );
    handle(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    port,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** The registries of the references (docker.io, registry.k8s.io, …). */
export function registriesOf(refs: string[]): string[] {
  return [...new Set(refs.map((r) => splitRef(r).registry))].sort();
}

/**
 * containerd hosts.toml files (its registry `config_path` layout, containerd ≥ 1.5): one folder per
 * registry, and `_default` for any other. Each names the loopback registry as its host and as its
 * `server`: the server is the host containerd falls back to after the listed ones, and left out it
 * would be the registry's real address, so a name we do not have would be looked up on the network.
 * Returns the files written.
 */
export async function writeHostsToml(
  configPath: string,
  registryHost: string,
  registries: string[] = ['docker.io', 'registry.k8s.io'],
): Promise<string[]> {
  const url = `http://${registryHost}`;
  const text =
    `# Written by jfs-sidecar's local node (src/local/image-registry.ts): images come from the loopback registry only.\n` +
    `server = "${url}"\n\n[host."${url}"]\n  capabilities = ["pull", "resolve"]\n`;
  const files: string[] = [];
  for (const registry of [...new Set([...registries, '_default'])]) {
    // containerd looks for host:port as "host_port_" (its hostDirectory()).
    const dir = path.join(configPath, registry.replace(/^(.*):(\d+)$/, '$1_$2_'));
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, 'hosts.toml');
    await writeFile(file, text);
    files.push(file);
  }
  return files;
}
