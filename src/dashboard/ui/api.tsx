// The page's side of the API: the live view over SSE, write requests with the user's token (ADR 0023).
import type { DashView } from '../view.js';

export interface Snapshot {
  version: number;
  view: DashView;
  allowWrites: boolean;
}

const TOKEN_KEY = 'jfs-dashboard-token';

export function getToken(): string {
  return sessionStorage.getItem(TOKEN_KEY) ?? '';
}

export function setToken(token: string): void {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** A write request: JSON, the header that proves it comes from this page, the user's token when given. */
export async function send(method: 'POST' | 'PUT', url: string, body: unknown): Promise<unknown> {
  const headers: Record<string, string> = { 'content-type': 'application/json', 'x-jfs-dashboard': '1' };
  const token = getToken();
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(url, { method, headers, body: JSON.stringify(body) });
  const data = (await res.json().catch(() => ({ message: res.statusText }))) as { message?: string };
  if (!res.ok) throw new Error(data.message ?? `HTTP ${res.status}`);
  return data;
}

/** Follows the live view; returns the function that stops it. */
export function followView(onView: (s: Snapshot) => void, onState: (connected: boolean) => void): () => void {
  const es = new EventSource('api/stream');
  es.addEventListener('view', (e) => {
    onState(true);
    onView(JSON.parse((e as MessageEvent<string>).data) as Snapshot);
  });
  es.onerror = () => onState(false);
  return () => es.close();
}

/** A GET with the user's token when one is set (the diagnosis then reads what they may read). */
export async function get(url: string): Promise<unknown> {
  const token = getToken();
  const res = await fetch(url, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  const data = (await res.json().catch(() => ({ message: res.statusText }))) as { message?: string };
  if (!res.ok) throw new Error(data.message ?? `HTTP ${res.status}`);
  return data;
}
