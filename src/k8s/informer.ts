// An informer cache that restarts itself, with exponential backoff, when its
// watch fails, and tells whether its first list has completed.
import {
  ListWatch,
  Watch,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  type ListPromise,
  type ObjectCallback,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { setTimeout as sleep } from 'node:timers/promises';

export interface InformerOptions<T extends KubernetesObject> {
  kubeConfig: KubeConfig;
  /** Watch path, e.g. /api/v1/persistentvolumeclaims. */
  path: string;
  list: ListPromise<T>;
  /**
   * The LIST in pages of `LIST_PAGE_SIZE` (limit/continue), each page transformed before the next is fetched:
   * a relist of 100,000 objects never holds them all whole at once. Used instead of `list` when given.
   */
  listPage?: (page: { limit: number; _continue?: string }) => Promise<KubernetesListObject<T>>;
  labelSelector?: string;
  fieldSelector?: string;
  log: Logger;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /**
   * What the cache keeps of each object (src/k8s/lean-objects.ts), applied to the LIST's items and to every
   * watch event before the object enters the cache or reaches a callback.
   */
  transform?: (obj: T) => T;
}

export const LIST_PAGE_SIZE = 500;

/** The pages of a LIST as one list (one resourceVersion: the API server serves every page from one snapshot). */
export function pagedList<T extends KubernetesObject>(
  listPage: NonNullable<InformerOptions<T>['listPage']>,
  transform: (obj: T) => T,
): ListPromise<T> {
  return async () => {
    const items: T[] = [];
    let cont: string | undefined;
    let page: KubernetesListObject<T>;
    do {
      page = await listPage({ limit: LIST_PAGE_SIZE, _continue: cont });
      for (const o of page.items) items.push(transform(o));
      cont = page.metadata?._continue || undefined;
    } while (cont);
    return { ...page, metadata: { ...page.metadata, _continue: undefined }, items };
  };
}

/** A Watch whose ADDED/MODIFIED/DELETED objects pass through `transform` first (BOOKMARK, ERROR as they are). */
class TransformingWatch<T> extends Watch {
  constructor(
    config: KubeConfig,
    private readonly transform: (obj: T) => T,
  ) {
    super(config);
  }

  override watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    return super.watch(
      path,
      queryParams,
      (phase, apiObj, watchObj) =>
        callback(
          phase,
          phase === 'ADDED' || phase === 'MODIFIED' || phase === 'DELETED' ? this.transform(apiObj as T) : apiObj,
          watchObj,
        ),
      done,
    );
  }
}

export class ResilientInformer<T extends KubernetesObject> {
  private readonly lw: ListWatch<T>;
  private syncedOnce = false;
  private stopped = false;
  private backoffMs: number;
  private timer: NodeJS.Timeout | undefined;

  // Without the transform: a stored function of T would make ResilientInformer<T> invariant in T.
  private readonly opts: Omit<InformerOptions<T>, 'transform' | 'listPage'>;

  constructor({ transform, listPage, ...opts }: InformerOptions<T>) {
    this.opts = opts;
    this.backoffMs = opts.minBackoffMs ?? 500;
    this.lw = new ListWatch<T>(
      opts.path,
      transform ? new TransformingWatch(opts.kubeConfig, transform) : new Watch(opts.kubeConfig),
      listPage
        ? pagedList(listPage, transform ?? ((o) => o))
        : transform
          ? async () => {
              const list = await opts.list();
              return { ...list, items: list.items.map(transform) };
            }
          : opts.list,
      false,
      opts.labelSelector,
      opts.fieldSelector,
    );
    this.lw.on('error', (err) => this.restartLater(err));
    this.lw.on('connect', () => {
      this.backoffMs = this.opts.minBackoffMs ?? 500;
    });
  }

  get synced(): boolean {
    return this.syncedOnce;
  }

  get(name: string, namespace?: string): T | undefined {
    return this.lw.get(name, namespace);
  }

  list(namespace?: string): ReadonlyArray<T> {
    return this.lw.list(namespace);
  }

  on(verb: 'add' | 'update' | 'delete', cb: ObjectCallback<T>): void {
    this.lw.on(verb, cb);
  }

  /** Starts the informer; resolves once the first list is in the cache (retrying until it is). */
  async start(): Promise<void> {
    for (;;) {
      if (this.stopped) return;
      try {
        await this.lw.start();
        this.syncedOnce = true;
        return;
      } catch (err) {
        this.opts.log.warn(
          { path: this.opts.path, err: describeError(err), retryInMs: this.backoffMs },
          'informer list failed',
        );
        await sleep(this.nextBackoff());
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.lw.stop();
  }

  private nextBackoff(): number {
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.opts.maxBackoffMs ?? 30_000);
    return delay;
  }

  private restartLater(err: unknown): void {
    if (this.stopped || this.timer) return;
    const delay = this.nextBackoff();
    this.opts.log.warn(
      { path: this.opts.path, err: describeError(err), retryInMs: delay },
      'watch failed; restarting informer',
    );
    this.timer = setTimeout(() => {
      this.timer = undefined;
      // The cache keeps serving its last state while the informer relists.
      this.start().catch((e) => this.restartLater(e));
    }, delay);
  }
}

export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
