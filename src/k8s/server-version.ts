// The API server's version, read at start and again every few minutes, so that an upgraded control plane is seen
// without a restart (the injector's native-sidecar default follows it: src/config/schema.ts, withServerVersion).
import { type KubeConfig, VersionApi } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { ServerVersion } from '../config/schema.js';

export const SERVER_VERSION_RECHECK_MS = 10 * 60 * 1000;

export class ServerVersionWatch {
  private version: ServerVersion | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly api: VersionApi;

  constructor(
    kc: KubeConfig,
    private readonly log: Logger,
    private readonly recheckMs = SERVER_VERSION_RECHECK_MS,
  ) {
    this.api = kc.makeApiClient(VersionApi);
  }

  /** The last version read; undefined until the first read succeeded. */
  get current(): ServerVersion | undefined {
    return this.version;
  }

  /** Reads it once (a failure is logged; the next recheck tries again), then keeps rechecking. */
  async start(): Promise<void> {
    await this.read();
    this.timer = setInterval(() => void this.read(), this.recheckMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private async read(): Promise<void> {
    try {
      const v = await this.api.getCode();
      const next: ServerVersion = { major: v.major, minor: v.minor, gitVersion: v.gitVersion };
      if (next.gitVersion !== this.version?.gitVersion || next.minor !== this.version?.minor)
        this.log.info({ serverVersion: next.gitVersion ?? `${next.major}.${next.minor}` }, 'API server version');
      this.version = next;
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'cannot read the API server version; keeping the last one');
    }
  }
}
