// exec into a container as `kubectl exec` does, with the user's credentials: captured (the diagnosis's df) or
// streamed to our stdout (accesslog, warmup) until the command ends or the user presses Ctrl-C.
import { Exec, type KubeConfig, type V1Status } from '@kubernetes/client-node';
import { PassThrough, type Writable } from 'node:stream';

/** What is used of the exec's WebSocket (its type comes from isomorphic-ws, which the linter cannot resolve). */
interface Socket {
  on(event: 'close', listener: () => void): void;
  close(): void;
}
const asSocket = (ws: unknown) => ws as Socket;

export interface PodRef {
  namespace: string;
  name: string;
  container: string;
}

/** Runs `command`, returns what it printed and whether it succeeded; never throws (a failed exec is a result). */
export async function execCapture(
  kc: KubeConfig,
  pod: PodRef,
  command: string[],
  timeoutMs: number,
): Promise<{ ok: boolean; output: string }> {
  const out = new PassThrough();
  let output = '';
  out.on('data', (c: Buffer) => (output += c.toString()));
  try {
    const status = await new Promise<V1Status>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs / 1000} s`)), timeoutMs);
      new Exec(kc)
        .exec(pod.namespace, pod.name, pod.container, command, out, out, null, false, (s) => {
          clearTimeout(timer);
          resolve(s);
        })
        .then((ws) => asSocket(ws).on('close', () => clearTimeout(timer)))
        .catch((e: unknown) => {
          clearTimeout(timer);
          reject(e instanceof Error ? e : new Error(String(e)));
        });
    });
    return { ok: status.status === 'Success', output: output || (status.message ?? '') };
  } catch (err) {
    return { ok: false, output: `${output}${(err as Error).message}` };
  }
}

/**
 * Streams `command`'s output to `stdout`/`stderr` until it ends (resolves with its exit code) or `signal` aborts
 * (Ctrl-C: the connection is closed, which ends the command in the container; resolves 130).
 */
export async function execStream(
  kc: KubeConfig,
  pod: PodRef,
  command: string[],
  io: { stdout: Writable; stderr: Writable; signal?: AbortSignal },
): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let done = false;
    const finish = (code: number) => {
      if (done) return;
      done = true;
      resolve(code);
    };
    new Exec(kc)
      .exec(pod.namespace, pod.name, pod.container, command, io.stdout, io.stderr, null, false, (s) => {
        const code = Number(s.details?.causes?.find((c) => c.reason === 'ExitCode')?.message ?? 1);
        finish(s.status === 'Success' ? 0 : code);
      })
      .then((raw) => {
        const ws = asSocket(raw);
        const abort = () => {
          ws.close();
          finish(130);
        };
        if (io.signal?.aborted) abort();
        io.signal?.addEventListener('abort', abort, { once: true });
        // The status channel speaks before the socket closes; a close without it is a lost connection.
        ws.on('close', () => finish(1));
      })
      .catch((e: unknown) => reject(e instanceof Error ? e : new Error(String(e))));
  });
}
