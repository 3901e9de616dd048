// `jfs-sidecar inject -f FILE [-f FILE …] [--config config.yaml] [--serverless]`:
// offline injection for GitOps pipelines. Objects come out in input order;
// errors go to stderr with a non-zero exit, naming the object.
import { readFileSync } from 'node:fs';
import { parseGlobalConfig, ConfigError } from '../config/schema.js';
import { configFromObjects } from '../config/options.js';
import { DenyError } from '../contract/deny.js';
import { injectObjects, ManifestError, parseManifests, stringifyManifests } from '../offline/inject-manifests.js';

export interface InjectCommandOptions {
  files: string[];
  config?: string;
  serverless: boolean;
  mountImage?: string;
  /** The credential broker for volumes in broker mode (ADR 0010): its URL, fetch image and CA file. */
  broker?: { url: string; image: string; caFile: string };
  /** The jfs-sidecar image (--credentials-image): runs the FUSE fd holder of native sidecars. */
  projectImage?: string;
}

export interface CommandIo {
  readStdin(): string;
  stdout(text: string): void;
  stderr(text: string): void;
}

/** Returns the exit code. */
export function injectCommand(opts: InjectCommandOptions, io: CommandIo): number {
  try {
    if (!opts.files.length) throw new ManifestError('no input: give -f FILE (or -f - for standard input)');
    const objects = opts.files.flatMap((f) =>
      parseManifests(f === '-' ? io.readStdin() : readFileSync(f, 'utf8'), f === '-' ? 'stdin' : f),
    );
    const config = opts.config ? parseGlobalConfig(readFileSync(opts.config, 'utf8')) : configFromObjects(objects);
    // What of the config is not applied (a refused entry, an ignored switch), as the webhook logs it.
    for (const issue of config.issues) io.stderr(`warning: config.yaml: ${issue.message}\n`);
    const results = injectObjects(objects, {
      mode: opts.serverless ? 'serverless' : 'sidecar',
      config,
      defaultMountImage: opts.mountImage,
      projectImage: opts.projectImage,
      broker: opts.broker && {
        url: opts.broker.url,
        image: opts.broker.image,
        caPem: readFileSync(opts.broker.caFile, 'utf8'),
      },
    });
    for (const r of results) for (const w of r.outcome?.warnings ?? []) io.stderr(`warning: ${w}\n`);
    io.stdout(stringifyManifests(results.map((r) => r.object)));
    return 0;
  } catch (err) {
    if (err instanceof DenyError) {
      io.stderr(`error: ${err.message} [${err.code}]\n`);
      return 1;
    }
    if (
      err instanceof ManifestError ||
      err instanceof ConfigError ||
      (err as NodeJS.ErrnoException).code === 'ENOENT'
    ) {
      io.stderr(`error: ${(err as Error).message}\n`);
      return 2;
    }
    throw err;
  }
}
