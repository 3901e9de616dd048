// Inputs and outputs of the pure injector.
import type { V1Pod } from '@kubernetes/client-node';
import type { InjectMode } from '../contract/inject-mode.js';
import type { BrokerClientOptions } from '../mount/credentials.js';
import type { MountContext } from '../mount/settings.js';

export type { InjectMode };

/** The mount spec's context (global config, default image) and the namespace's mode. */
export interface InjectOptions extends MountContext {
  mode: InjectMode;
  /** The credential broker the fetch step asks (ADR 0010); needed only by volumes with juicefs/credentials: broker. */
  broker?: BrokerClientOptions;
  /**
   * The jfs-sidecar image, which runs the FUSE fd holder of native sidecars (src/mount/fd-holder.ts); without it no
   * holder is injected.
   */
  projectImage?: string;
}

/** Why a pod was left as it was. The same code labels the metric, the log line and the warning. */
export type SkipCode = 'opted-out' | 'already-injected' | 'no-juicefs-volumes';

export type InjectOutcome =
  | { kind: 'injected'; pod: V1Pod; warnings: string[] }
  | { kind: 'skipped'; code: SkipCode; message: string; warnings: string[] };
