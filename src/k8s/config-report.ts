// What the webhook and the node service say about the global ConfigMap they loaded: one log line per issue (naming
// the entry and the field), one Warning Event per issue on the ConfigMap, once per ConfigMap version, and the
// readiness detail (/readyz). The issues themselves are the schema's (src/config/schema.ts).
import type { CoreV1Api, CoreV1Event, V1ConfigMap } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { ConfigIssue, GlobalConfig } from '../config/schema.js';
import { CONFIG_MAP_NAME } from '../contract/keys.js';

/** At most this many Events per version: a document with hundreds of bad entries must not flood the namespace. */
const MAX_EVENTS = 20;

export const EVENT_REASON: Record<ConfigIssue['effect'], string> = {
  'entry-refused': 'ConfigEntryRefused',
  'field-ignored': 'ConfigFieldIgnored',
};

/** The readiness detail of the loaded config. */
export interface ConfigStatus {
  /** The ConfigMap version in force ("" when there is none). */
  resourceVersion: string;
  /** Why a newer version was refused whole (the one in force stays). */
  error?: string;
  /** What the version in force says that is not applied. */
  issues: string[];
}

export class ConfigReport {
  private reportedVersion: string | undefined;
  private status: ConfigStatus = { resourceVersion: '', issues: [] };

  constructor(
    private readonly opts: {
      core: CoreV1Api;
      namespace: string;
      /** Who reports, e.g. `jfs-sidecar-webhook`, `jfs-sidecar-node/<node>`. */
      component: string;
      log: Logger;
    },
  ) {}

  get current(): ConfigStatus {
    return this.status;
  }

  /** A version loaded: its issues logged and recorded as Events (once per version). */
  loaded(cm: V1ConfigMap | undefined, config: GlobalConfig): void {
    const version = cm?.metadata?.resourceVersion ?? '';
    this.status = { resourceVersion: version, issues: config.issues.map((i) => i.message) };
    if (this.reportedVersion === version) return;
    this.reportedVersion = version;
    for (const issue of config.issues) {
      this.opts.log.warn(
        {
          configMap: `${this.opts.namespace}/${CONFIG_MAP_NAME}`,
          resourceVersion: version,
          field: issue.path,
          entry: issue.entry,
          effect: issue.effect,
        },
        issue.message,
      );
    }
    if (cm) void this.events(cm, config.issues.slice(0, MAX_EVENTS));
  }

  /** A version refused whole: the previous one stays in force. */
  refused(cm: V1ConfigMap | undefined, message: string): void {
    const version = cm?.metadata?.resourceVersion ?? '';
    this.status = { ...this.status, error: `ConfigMap version ${version}: ${message}` };
    if (this.reportedVersion === version) return;
    this.reportedVersion = version;
    this.opts.log.error(
      { configMap: `${this.opts.namespace}/${CONFIG_MAP_NAME}`, resourceVersion: version },
      `${message}; keeping the previous config`,
    );
    if (cm)
      void this.events(
        cm,
        [{ path: 'config.yaml', effect: 'entry-refused', message: `${message}; the previous version stays in force` }],
        'ConfigRefused',
      );
  }

  private async events(cm: V1ConfigMap, issues: ConfigIssue[], reason?: string): Promise<void> {
    const now = new Date();
    for (const issue of issues) {
      const event: CoreV1Event = {
        metadata: { generateName: `${CONFIG_MAP_NAME}.`, namespace: this.opts.namespace },
        involvedObject: {
          apiVersion: 'v1',
          kind: 'ConfigMap',
          name: cm.metadata?.name,
          namespace: this.opts.namespace,
          uid: cm.metadata?.uid,
          resourceVersion: cm.metadata?.resourceVersion,
        },
        reason: reason ?? EVENT_REASON[issue.effect],
        message: issue.message,
        type: 'Warning',
        source: { component: this.opts.component },
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      };
      await this.opts.core
        .createNamespacedEvent({ namespace: this.opts.namespace, body: event })
        .catch((err: Error) => this.opts.log.warn({ err: err.message, field: issue.path }, 'event not recorded'));
    }
  }
}
