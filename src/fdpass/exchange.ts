// One JFS_SUPER_COMM exchange over a usocket connection: the bytes and descriptors of one message.
import { closeSync } from 'node:fs';
import type { USocket } from 'usocket';

export interface Message {
  data: Buffer;
  fds: number[];
}

/** Every byte and fd the peer sends until it closes its end (juicefs closes right after its answer). */
export function readToEnd(sock: USocket, timeoutMs: number): Promise<Message> {
  return collect(sock, timeoutMs, () => false);
}

/** The first message that carries descriptors (juicefs sends each message with one sendmsg). */
export function readOneWithFds(sock: USocket, timeoutMs: number): Promise<Message> {
  return collect(sock, timeoutMs, (m) => m.fds.length > 0 && m.data.length > 0);
}

function collect(sock: USocket, timeoutMs: number, complete: (m: Message) => boolean): Promise<Message> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const fds: number[] = [];
    let done = false;
    const message = (): Message => ({ data: Buffer.concat(chunks), fds });
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) {
        // A failed exchange still owns what it received: close it, or each failure leaks a descriptor.
        closeAll(fds);
        reject(err);
      } else resolve(message());
    };
    // Unref'd: a holder that stops must not wait for a peer that never answers.
    const timer = setTimeout(() => finish(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs).unref();
    sock.on('fds', (got) => {
      fds.push(...got);
      if (complete(message())) finish();
    });
    sock.on('data', (chunk) => {
      chunks.push(chunk);
      if (complete(message())) finish();
    });
    sock.on('end', () => finish());
    sock.on('close', () => finish());
    sock.on('error', (err) => finish(err));
  });
}

/** Write one message; resolves once it is sent (the descriptors may then be closed). */
export function send(sock: USocket, m: Message): Promise<void> {
  return new Promise((resolve, reject) => {
    sock.write({ data: m.data, fds: m.fds }, (err) => (err ? reject(err) : resolve()));
  });
}

export function closeAll(fds: number[]): void {
  for (const fd of fds.splice(0)) closeQuietly(fd);
}

export function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed: nothing is leaked
  }
}
