// Closing usocket handles safely. usocket 1.1.0 closes its libuv poll handle with uv_close() (asynchronous:
// libuv finishes it in the loop's close phase) but drops its JS reference to the native object at once; if
// V8 collects that object before the close phase, libuv reads freed memory and aborts the process
// (`uv__finish_close: Assertion ... UV_HANDLE_CLOSING` — reproduced with close() followed by gc()). Keeping
// the native object reachable for a moment after close() avoids it; a handle never closed is worse (its
// destructor frees it while libuv still polls), so every socket here is destroyed explicitly.
import type { UServer, USocket } from 'usocket';

const closing = new Set<object>();

function keepAlive(wrap: object | null | undefined): void {
  if (!wrap) return;
  closing.add(wrap);
  // One loop turn is enough (the close phase runs before the next timers); 1 s leaves a wide margin.
  setTimeout(() => closing.delete(wrap), 1000).unref();
}

export function closeServer(server: UServer): void {
  keepAlive(server._wrap);
  server.close();
}

export function destroySocket(sock: USocket): void {
  keepAlive(sock._wrap);
  sock.destroy();
}

/** Half-close (the peer sees end of stream), then close; usocket closes only once both ends have ended. */
export function endSocket(sock: USocket): void {
  keepAlive(sock._wrap);
  sock.end();
  sock.destroy();
}
