// Types for npm `usocket` 1.1.x (it ships none): only what src/fdpass/ uses, read from its index.js.
declare module 'usocket' {
  import { Duplex } from 'node:stream';
  import { EventEmitter } from 'node:events';

  export interface FdChunk {
    data?: Buffer;
    fds?: number[];
    callback?: () => void;
  }

  export class USocket extends Duplex {
    /** The native handle; null once closed (read only by lifecycle.ts, see there). */
    _wrap: object | null | undefined;
    constructor(opts?: string | { path?: string; fd?: number });
    connect(path: string | { path: string }, cb?: () => void): void;
    /** Buffered data and the file descriptors received with it (2-argument form). */
    read(size: number | null, fdCount: number | null): { data: Buffer | null; fds: number[] } | null;
    read(size?: number): Buffer | null;
    write(chunk: Buffer | FdChunk | number[], cb?: (err?: Error | null) => void): boolean;
    end(cb?: () => void): this;
    destroy(): this;
    on(event: 'connected' | 'end' | 'readable', listener: () => void): this;
    on(event: 'close', listener: (err?: Error) => void): this;
    on(event: 'error', listener: (err: Error) => void): this;
    on(event: 'fds', listener: (fds: number[]) => void): this;
    on(event: 'data', listener: (chunk: Buffer) => void): this;
    once(event: 'connected', listener: () => void): this;
    once(event: 'error', listener: (err: Error) => void): this;
  }

  export class UServer extends EventEmitter {
    _wrap: object | null | undefined;
    listen(path: string, backlog?: number, cb?: () => void): void;
    close(): void;
    on(event: 'connection', listener: (socket: USocket) => void): this;
    on(event: 'error', listener: (err: Error) => void): this;
    once(event: 'listening', listener: () => void): this;
    once(event: 'error', listener: (err: Error) => void): this;
    removeListener(event: string, listener: (...args: never[]) => void): this;
  }
}
