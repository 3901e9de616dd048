// The dashboard's page: one live view from the server (SSE), hash routes for the pages, a token field for write
// actions (they act with the user's own credentials, ADR 0023).
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { followView, getToken, setToken, type Snapshot } from './api.js';
import {
  ConfigPage,
  EventsPage,
  MountsPage,
  PodPage,
  PodsPage,
  PvcPage,
  PvPage,
  ScPage,
  UpgradePage,
  UpgradesPage,
  VolumesPage,
} from './pages.js';

const NAV: [string, string][] = [
  ['pods', 'App pods'],
  ['mounts', 'Mount Pods & sidecars'],
  ['volumes', 'Volumes'],
  ['upgrades', 'Upgrades'],
  ['config', 'ConfigMap'],
  ['events', 'Events'],
];

function route(): string[] {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  return parts.length ? parts : ['pods'];
}

function SignIn() {
  const [token, setValue] = useState(getToken());
  const [saved, setSaved] = useState(getToken() !== '');
  return (
    <form
      class="signin"
      onSubmit={(e) => {
        e.preventDefault();
        setToken(token.trim());
        setSaved(token.trim() !== '');
      }}
    >
      <label for="token">Your bearer token (for write actions)</label>
      <input
        id="token"
        type="password"
        autocomplete="off"
        value={token}
        onInput={(e) => setValue((e.target as HTMLInputElement).value)}
      />
      <button type="submit" class="secondary">
        {saved ? 'Update' : 'Use'}
      </button>
      <span role="status">{saved ? 'token set' : 'read-only'}</span>
    </form>
  );
}

function App() {
  const [snap, setSnap] = useState<Snapshot | undefined>(undefined);
  const [connected, setConnected] = useState(true);
  const [path, setPath] = useState(route());
  useEffect(() => followView(setSnap, setConnected), []);
  useEffect(() => {
    const on = () => setPath(route());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  const [page, a, b] = path;
  const current =
    ({ pod: 'pods', pvc: 'volumes', pv: 'volumes', sc: 'volumes', upgrade: 'upgrades' } as Record<string, string>)[
      page
    ] ?? page;
  useEffect(() => {
    document.title = `${NAV.find(([k]) => k === current)?.[1] ?? 'Dashboard'} · JuiceFS`;
  }, [current]);
  let body;
  if (!snap)
    body = (
      <p class="loading" role="status">
        Loading the cluster’s objects…
      </p>
    );
  else {
    const props = { view: snap.view, allowWrites: snap.allowWrites };
    if (page === 'pod' && a && b) body = <PodPage {...props} namespace={a} name={b} />;
    else if (page === 'pvc' && a && b) body = <PvcPage {...props} namespace={a} name={b} />;
    else if (page === 'pv' && a) body = <PvPage {...props} name={a} />;
    else if (page === 'sc' && a) body = <ScPage {...props} name={a} />;
    else if (page === 'upgrade' && a) body = <UpgradePage {...props} name={a} />;
    else if (page === 'mounts') body = <MountsPage {...props} />;
    else if (page === 'volumes') body = <VolumesPage {...props} />;
    else if (page === 'upgrades') body = <UpgradesPage {...props} />;
    else if (page === 'config') body = <ConfigPage {...props} />;
    else if (page === 'events') body = <EventsPage {...props} />;
    else body = <PodsPage {...props} />;
  }
  return (
    <>
      <header class="top">
        <h1>JuiceFS</h1>
        <nav aria-label="pages">
          <ul>
            {NAV.map(([k, label]) => (
              <li key={k}>
                <a href={`#/${k}`} aria-current={current === k ? 'page' : undefined}>
                  {label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        {snap?.allowWrites && <SignIn />}
      </header>
      <main>
        {!connected && (
          <p class="notice error" role="alert">
            Live updates lost; reconnecting…
          </p>
        )}
        {body}
      </main>
    </>
  );
}

const root = document.getElementById('app')!;
// The placeholder goes: Preact renders beside what it did not render itself.
root.textContent = '';
render(<App />, root);
