// The pages: app pods, Mount Pods and sidecars, volumes (PVCs, PVs, StorageClasses), one object's page with its
// links, events, logs and upgrade button, the ConfigMap, the upgrades.
import { useState } from 'preact/hooks';
import type { AppPodRow, DashView, MountPodRow, UpgradeRow } from '../view.js';
import { send } from './api.js';
import { Diagnosis } from './diagnosis.js';
import {
  Clients,
  diffLines,
  Events,
  LogView,
  NodeChart,
  Notice,
  Phase,
  podHref,
  pvcHref,
  pvHref,
  Refs,
  scHref,
  Status,
  UpgradeBar,
  upgradeHref,
} from './widgets.js';

export interface PageProps {
  view: DashView;
  allowWrites: boolean;
}

const ref = (ns: string, name: string) => `${ns}/${name}`;

function matchesLabels(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

/** `a=b,c=d` → { a: 'b', c: 'd' }; undefined when malformed. */
function parseLabels(text: string): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  for (const part of text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const m = /^([^=\s]+)=([^=\s]*)$/.exec(part);
    if (!m) return undefined;
    out[m[1]] = m[2];
  }
  return out;
}

export function PodsPage({ view }: PageProps) {
  const [filter, setFilter] = useState('');
  const rows = view.appPods.filter((p) => !filter || ref(p.namespace, p.name).includes(filter));
  return (
    <section aria-labelledby="pods-h">
      <h2 id="pods-h">App pods using JuiceFS</h2>
      <form class="inline" role="search" onSubmit={(e) => e.preventDefault()}>
        <label>
          Filter by namespace/name
          <input value={filter} onInput={(e) => setFilter((e.target as HTMLInputElement).value)} />
        </label>
        <span class="muted" role="status">
          {rows.length} of {view.appPods.length} pods
        </span>
      </form>
      <table>
        <caption class="muted">Each pod, how it mounts JuiceFS (sidecar or Mount Pod), its PVCs and clients</caption>
        <thead>
          <tr>
            <th scope="col">pod</th>
            <th scope="col">mode</th>
            <th scope="col">node</th>
            <th scope="col">status</th>
            <th scope="col">PVCs</th>
            <th scope="col">client</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((p) => (
            <tr key={p.uid || ref(p.namespace, p.name)}>
              <td>
                <a href={podHref(ref(p.namespace, p.name))}>{ref(p.namespace, p.name)}</a>
              </td>
              <td>{p.mode}</td>
              <td>{p.node ?? <span class="muted">unscheduled</span>}</td>
              <td>
                <Phase phase={p.phase} /> {p.ready ? '' : <span class="muted">(not ready)</span>}
              </td>
              <td>
                <Refs refs={p.pvcs} href={pvcHref} />
              </td>
              <td>
                {p.mode === 'sidecar' ? (
                  p.sidecars.map((s) => (
                    <div key={s.container}>
                      <span class="mono">{s.image}</span>{' '}
                      <Status ok={s.ready} text={s.ready ? 'ready' : (s.problem ?? 'not ready')} />
                    </div>
                  ))
                ) : (
                  <Refs refs={p.mountPods} href={podHref} />
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

export function MountsPage({ view }: PageProps) {
  const sidecarPods = view.appPods.filter((p) => p.mode === 'sidecar');
  return (
    <section aria-labelledby="mounts-h">
      <h2 id="mounts-h">Mount Pods and sidecars</h2>
      <h3>Clients per node</h3>
      <NodeChart nodes={view.nodes} />
      <table>
        <caption>Mount Pods ({view.mountPods.length})</caption>
        <thead>
          <tr>
            <th scope="col">Mount Pod</th>
            <th scope="col">node</th>
            <th scope="col">status</th>
            <th scope="col">PV</th>
            <th scope="col">image</th>
            <th scope="col">app pods</th>
          </tr>
        </thead>
        <tbody>
          {view.mountPods.map((m) => (
            <tr key={ref(m.namespace, m.name)}>
              <td>
                <a href={podHref(ref(m.namespace, m.name))}>{ref(m.namespace, m.name)}</a>
              </td>
              <td>{m.node}</td>
              <td>
                <Phase phase={m.phase} />
              </td>
              <td>{m.pv ? <a href={pvHref(m.pv)}>{m.pv}</a> : <span class="muted">—</span>}</td>
              <td class="mono">{m.client?.image}</td>
              <td>
                <Refs refs={m.appPods} href={podHref} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <table>
        <caption>Sidecars ({sidecarPods.reduce((n, p) => n + p.sidecars.length, 0)})</caption>
        <thead>
          <tr>
            <th scope="col">pod</th>
            <th scope="col">container</th>
            <th scope="col">image</th>
            <th scope="col">ready</th>
            <th scope="col">restarts</th>
            <th scope="col">PVCs</th>
          </tr>
        </thead>
        <tbody>
          {sidecarPods.flatMap((p) =>
            p.sidecars.map((s) => (
              <tr key={`${ref(p.namespace, p.name)}/${s.container}`}>
                <td>
                  <a href={podHref(ref(p.namespace, p.name))}>{ref(p.namespace, p.name)}</a>
                </td>
                <td>{s.container}</td>
                <td class="mono">{s.image}</td>
                <td>
                  <Status ok={s.ready} text={s.ready ? 'ready' : (s.problem ?? 'not ready')} />
                </td>
                <td>{s.restarts}</td>
                <td>
                  <Refs refs={p.pvcs} href={pvcHref} />
                </td>
              </tr>
            )),
          )}
        </tbody>
      </table>
    </section>
  );
}

export function VolumesPage({ view }: PageProps) {
  return (
    <section aria-labelledby="vol-h">
      <h2 id="vol-h">Volumes</h2>
      <table>
        <caption>PersistentVolumeClaims ({view.pvcs.length})</caption>
        <thead>
          <tr>
            <th scope="col">PVC</th>
            <th scope="col">status</th>
            <th scope="col">PV</th>
            <th scope="col">StorageClass</th>
            <th scope="col">app pods</th>
          </tr>
        </thead>
        <tbody>
          {view.pvcs.map((c) => (
            <tr key={ref(c.namespace, c.name)}>
              <td>
                <a href={pvcHref(ref(c.namespace, c.name))}>{ref(c.namespace, c.name)}</a>
              </td>
              <td>
                <Phase phase={c.phase} />
              </td>
              <td>{c.pv ? <a href={pvHref(c.pv)}>{c.pv}</a> : <span class="muted">—</span>}</td>
              <td>{c.storageClass ? <a href={scHref(c.storageClass)}>{c.storageClass}</a> : '—'}</td>
              <td>
                <Refs refs={c.appPods} href={podHref} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <table>
        <caption>PersistentVolumes ({view.pvs.length})</caption>
        <thead>
          <tr>
            <th scope="col">PV</th>
            <th scope="col">status</th>
            <th scope="col">claim</th>
            <th scope="col">StorageClass</th>
            <th scope="col">Mount Pods</th>
          </tr>
        </thead>
        <tbody>
          {view.pvs.map((p) => (
            <tr key={p.name}>
              <td>
                <a href={pvHref(p.name)}>{p.name}</a>
              </td>
              <td>
                <Phase phase={p.phase} />
              </td>
              <td>{p.claim ? <a href={pvcHref(p.claim)}>{p.claim}</a> : '—'}</td>
              <td>{p.storageClass ? <a href={scHref(p.storageClass)}>{p.storageClass}</a> : '—'}</td>
              <td>
                <Refs refs={p.mountPods} href={podHref} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <table>
        <caption>StorageClasses ({view.storageClasses.length})</caption>
        <thead>
          <tr>
            <th scope="col">StorageClass</th>
            <th scope="col">reclaim</th>
            <th scope="col">binding</th>
            <th scope="col">PVs</th>
          </tr>
        </thead>
        <tbody>
          {view.storageClasses.map((s) => (
            <tr key={s.name}>
              <td>
                <a href={scHref(s.name)}>{s.name}</a>
              </td>
              <td>{s.reclaimPolicy ?? 'Delete'}</td>
              <td>{s.bindingMode ?? 'Immediate'}</td>
              <td>{s.pvs.length}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

function Attributes(props: { attrs: Record<string, string>; caption: string }) {
  const entries = Object.entries(props.attrs);
  if (!entries.length) return null;
  return (
    <table>
      <caption>{props.caption}</caption>
      <thead>
        <tr>
          <th scope="col">key</th>
          <th scope="col">value</th>
        </tr>
      </thead>
      <tbody>
        {entries.map(([k, v]) => (
          <tr key={k}>
            <td class="mono">{k}</td>
            <td class="mono">{v}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** Creates a sidecar upgrade of the pods a label selector picks in one namespace, with the user's token. */
function UpgradeForm(props: {
  view: DashView;
  namespace?: string;
  labels?: Record<string, string>;
  compact?: boolean;
}) {
  const [image, setImage] = useState('');
  const [namespaces, setNamespaces] = useState(props.namespace ?? '');
  const [selector, setSelector] = useState(
    Object.entries(props.labels ?? {})
      .map(([k, v]) => `${k}=${v}`)
      .join(','),
  );
  const [maxUnavailable, setMaxUnavailable] = useState('1');
  const [partition, setPartition] = useState('0');
  const [result, setResult] = useState<{ error?: string; name?: string }>({});
  const [busy, setBusy] = useState(false);
  const labels = parseLabels(selector);
  const nsList = namespaces
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const matched = labels
    ? props.view.appPods.filter(
        (p) =>
          p.mode === 'sidecar' && (!nsList.length || nsList.includes(p.namespace)) && matchesLabels(labels, p.labels),
      )
    : [];
  const submit = async (e: Event) => {
    e.preventDefault();
    if (!labels) return setResult({ error: 'the label selector must read key=value,key=value' });
    setBusy(true);
    try {
      const spec = {
        kind: 'sidecar',
        target: { image: image.trim() },
        selector: {
          ...(nsList.length ? { namespaces: nsList } : {}),
          ...(Object.keys(labels).length ? { podSelector: { matchLabels: labels } } : {}),
        },
        strategy: { maxUnavailable: Number(maxUnavailable) || 1, partition: Number(partition) || 0 },
      };
      const created = (await send('POST', 'api/upgrades', { spec })) as { metadata?: { name?: string } };
      setResult({ name: created.metadata?.name });
    } catch (err) {
      setResult({ error: (err as Error).message });
    } finally {
      setBusy(false);
    }
  };
  return (
    <form
      class="inline"
      aria-label={props.compact ? 'upgrade this pod' : 'new rollout'}
      onSubmit={(e) => void submit(e)}
    >
      <label>
        New client image
        <input
          required
          value={image}
          placeholder="juicedata/mount:ce-v1.3.2"
          onInput={(e) => setImage((e.target as HTMLInputElement).value)}
        />
      </label>
      {!props.compact && (
        <>
          <label>
            Namespaces (comma-separated, empty: all)
            <input value={namespaces} onInput={(e) => setNamespaces((e.target as HTMLInputElement).value)} />
          </label>
          <label>
            Pod labels (key=value,…)
            <input value={selector} onInput={(e) => setSelector((e.target as HTMLInputElement).value)} />
          </label>
          <label>
            Max unavailable
            <input
              type="number"
              min={1}
              value={maxUnavailable}
              onInput={(e) => setMaxUnavailable((e.target as HTMLInputElement).value)}
            />
          </label>
          <label>
            Partition (pods left as they are)
            <input
              type="number"
              min={0}
              value={partition}
              onInput={(e) => setPartition((e.target as HTMLInputElement).value)}
            />
          </label>
        </>
      )}
      <button type="submit" disabled={busy || !image.trim()}>
        {props.compact ? 'Upgrade this pod' : 'Start rollout'}
      </button>
      <span class="muted">
        selects {matched.length} pod{matched.length === 1 ? '' : 's'} with sidecars
      </span>
      {result.error && <Notice error>{result.error}</Notice>}
      {result.name && (
        <Notice>
          Upgrade <a href={upgradeHref(result.name)}>{result.name}</a> created.
        </Notice>
      )}
    </form>
  );
}

export function PodPage(props: PageProps & { namespace: string; name: string }) {
  const { view, namespace, name } = props;
  const k = ref(namespace, name);
  const app: AppPodRow | undefined = view.appPods.find((p) => ref(p.namespace, p.name) === k);
  const mount: MountPodRow | undefined = view.mountPods.find((p) => ref(p.namespace, p.name) === k);
  const events = view.events.filter((e) => e.kind === 'Pod' && ref(e.namespace, e.name) === k);
  if (!app && !mount) return <Notice error>No JuiceFS pod {k} in the cluster (it may have gone).</Notice>;
  const pvcs = app ? view.pvcs.filter((c) => app.pvcs.includes(ref(c.namespace, c.name))) : [];
  const upgrades = app?.upgrade ? view.upgrades.filter((u) => u.name === app.upgrade) : [];
  return (
    <section aria-labelledby="pod-h">
      <h2 id="pod-h">
        {mount ? 'Mount Pod' : 'App pod'} {k}
      </h2>
      <dl class="facts">
        <dt>node</dt>
        <dd>{(app ?? mount)!.node ?? 'unscheduled'}</dd>
        <dt>status</dt>
        <dd>
          <Phase phase={(app ?? mount)!.phase} /> {(app ?? mount)!.ready ? '(ready)' : '(not ready)'}
        </dd>
        {app && (
          <>
            <dt>mode</dt>
            <dd>{app.mode}</dd>
            <dt>PVCs</dt>
            <dd>
              <Refs refs={app.pvcs} href={pvcHref} />
            </dd>
            <dt>PVs</dt>
            <dd>
              <Refs refs={pvcs.map((c) => c.pv).filter((p): p is string => !!p)} href={pvHref} />
            </dd>
            <dt>StorageClasses</dt>
            <dd>
              <Refs
                refs={[...new Set(pvcs.map((c) => c.storageClass).filter((s): s is string => !!s))]}
                href={scHref}
              />
            </dd>
            <dt>Mount Pods</dt>
            <dd>
              <Refs refs={app.mountPods} href={podHref} />
            </dd>
            <dt>last upgrade</dt>
            <dd>{app.upgrade ? <a href={upgradeHref(app.upgrade)}>{app.upgrade}</a> : '—'}</dd>
          </>
        )}
        {mount && (
          <>
            <dt>PV</dt>
            <dd>{mount.pv ? <a href={pvHref(mount.pv)}>{mount.pv}</a> : '—'}</dd>
            <dt>app pods</dt>
            <dd>
              <Refs refs={mount.appPods} href={podHref} />
            </dd>
            <dt>references</dt>
            <dd>{mount.references}</dd>
            <dt>settings hash</dt>
            <dd class="mono">{mount.hash ?? '—'}</dd>
          </>
        )}
      </dl>
      {app && <Clients clients={app.sidecars} caption="JuiceFS sidecars" />}
      {mount?.client && <Clients clients={[mount.client]} caption="JuiceFS client" />}
      {app?.mode === 'sidecar' && props.allowWrites && (
        <section aria-labelledby="upg-h">
          <h3 id="upg-h">Upgrade the client in place</h3>
          <UpgradeForm view={view} namespace={namespace} labels={app.labels} compact />
        </section>
      )}
      {app && <Diagnosis kind="pod" namespace={namespace} name={name} />}
      {upgrades.map((u) => (
        <p key={u.name}>
          Upgrade <a href={upgradeHref(u.name)}>{u.name}</a>: <UpgradeBar upgrade={u} />
        </p>
      ))}
      <h3>Events</h3>
      <Events events={events} caption="Events of this pod" />
      <LogView namespace={namespace} pod={name} containers={(app ?? mount)!.containers} />
    </section>
  );
}

export function PvcPage(props: PageProps & { namespace: string; name: string }) {
  const k = ref(props.namespace, props.name);
  const c = props.view.pvcs.find((x) => ref(x.namespace, x.name) === k);
  if (!c) return <Notice error>No JuiceFS PVC {k}.</Notice>;
  return (
    <section aria-labelledby="pvc-h">
      <h2 id="pvc-h">PVC {k}</h2>
      <dl class="facts">
        <dt>status</dt>
        <dd>
          <Phase phase={c.phase} />
        </dd>
        <dt>PV</dt>
        <dd>{c.pv ? <a href={pvHref(c.pv)}>{c.pv}</a> : '— (not bound)'}</dd>
        <dt>StorageClass</dt>
        <dd>{c.storageClass ? <a href={scHref(c.storageClass)}>{c.storageClass}</a> : '—'}</dd>
        <dt>app pods</dt>
        <dd>
          <Refs refs={c.appPods} href={podHref} />
        </dd>
        <dt>ConfigMap patches</dt>
        <dd>{c.patches.length ? c.patches.map((i) => `mountPodPatch[${i}]`).join(', ') : '—'}</dd>
      </dl>
      <Attributes attrs={c.labels} caption="Labels" />
      <Diagnosis kind="pvc" namespace={c.namespace} name={c.name} />
      <h3>Events</h3>
      <Events
        events={props.view.events.filter((e) => e.kind === 'PersistentVolumeClaim' && ref(e.namespace, e.name) === k)}
        caption="Events of this PVC"
      />
    </section>
  );
}

export function PvPage(props: PageProps & { name: string }) {
  const p = props.view.pvs.find((x) => x.name === props.name);
  if (!p) return <Notice error>No JuiceFS PV {props.name}.</Notice>;
  return (
    <section aria-labelledby="pv-h">
      <h2 id="pv-h">PV {p.name}</h2>
      <dl class="facts">
        <dt>status</dt>
        <dd>
          <Phase phase={p.phase} />
        </dd>
        <dt>claim</dt>
        <dd>{p.claim ? <a href={pvcHref(p.claim)}>{p.claim}</a> : '—'}</dd>
        <dt>StorageClass</dt>
        <dd>{p.storageClass ? <a href={scHref(p.storageClass)}>{p.storageClass}</a> : '—'}</dd>
        <dt>volume handle</dt>
        <dd class="mono">{p.volumeHandle ?? '—'}</dd>
        <dt>Mount Pods</dt>
        <dd>
          <Refs refs={p.mountPods} href={podHref} />
        </dd>
      </dl>
      <Attributes attrs={p.attributes} caption="Volume attributes" />
      <Diagnosis kind="pv" name={p.name} />
      <h3>Events</h3>
      <Events
        events={props.view.events.filter((e) => e.kind === 'PersistentVolume' && e.name === p.name)}
        caption="Events of this PV"
      />
    </section>
  );
}

export function ScPage(props: PageProps & { name: string }) {
  const s = props.view.storageClasses.find((x) => x.name === props.name);
  if (!s) return <Notice error>No JuiceFS StorageClass {props.name}.</Notice>;
  return (
    <section aria-labelledby="sc-h">
      <h2 id="sc-h">StorageClass {s.name}</h2>
      <dl class="facts">
        <dt>provisioner</dt>
        <dd class="mono">{s.provisioner}</dd>
        <dt>reclaim policy</dt>
        <dd>{s.reclaimPolicy ?? 'Delete'}</dd>
        <dt>binding mode</dt>
        <dd>{s.bindingMode ?? 'Immediate'}</dd>
        <dt>PVs</dt>
        <dd>
          <Refs refs={s.pvs} href={pvHref} />
        </dd>
        <dt>PVCs</dt>
        <dd>
          <Refs refs={s.pvcs} href={pvcHref} />
        </dd>
      </dl>
      <Attributes attrs={s.parameters} caption="Parameters" />
    </section>
  );
}

export function ConfigPage({ view, allowWrites }: PageProps) {
  const c = view.config;
  const [text, setText] = useState<string | undefined>(undefined);
  const [result, setResult] = useState<{ error?: string; ok?: string }>({});
  const current = c.text ?? '';
  const edited = text ?? current;
  const changes = text !== undefined && text !== current ? diffLines(current, text) : [];
  const save = async (e: Event) => {
    e.preventDefault();
    try {
      await send('PUT', 'api/config', { text: edited, resourceVersion: c.resourceVersion });
      setResult({ ok: 'Saved: the webhook and node services reload it within seconds.' });
      setText(undefined);
    } catch (err) {
      setResult({ error: (err as Error).message });
    }
  };
  return (
    <section aria-labelledby="cfg-h">
      <h2 id="cfg-h">Global configuration (ConfigMap juicefs-csi-driver-config)</h2>
      {!c.present && <Notice>The ConfigMap does not exist: every default applies.</Notice>}
      {c.error && <Notice error>config.yaml is not valid: {c.error}</Notice>}
      <h3>Where running clients differ from it</h3>
      {c.drift.length ? (
        <table>
          <caption>Clients whose image or mount options are not what the ConfigMap now says</caption>
          <thead>
            <tr>
              <th scope="col">pod</th>
              <th scope="col">container</th>
              <th scope="col">PVC</th>
              <th scope="col">running image</th>
              <th scope="col">ConfigMap image</th>
              <th scope="col">options missing</th>
            </tr>
          </thead>
          <tbody>
            {c.drift.map((d) => (
              <tr key={`${d.pod}/${d.container}/${d.pvc}`}>
                <td>
                  <a href={podHref(d.pod)}>{d.pod}</a>
                </td>
                <td>{d.container}</td>
                <td>
                  <a href={pvcHref(d.pvc)}>{d.pvc}</a>
                </td>
                <td class="mono diff-del">{d.runningImage}</td>
                <td class="mono diff-add">{d.configImage ?? '(unchanged)'}</td>
                <td class="mono">{d.missingOptions.join(', ') || '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p>Every running client matches the ConfigMap.</p>
      )}
      <h3>mountPodPatch entries and the PVCs they match</h3>
      {c.patches.length ? (
        <table>
          <caption>Each pvcSelector and the PVCs it selects now</caption>
          <thead>
            <tr>
              <th scope="col">entry</th>
              <th scope="col">pvcSelector</th>
              <th scope="col">image</th>
              <th scope="col">mount options</th>
              <th scope="col">PVCs matched</th>
            </tr>
          </thead>
          <tbody>
            {c.patches.map((p) => (
              <tr key={p.index}>
                <td>mountPodPatch[{p.index}]</td>
                <td class="mono">{p.selector ? JSON.stringify(p.selector) : '(every PVC)'}</td>
                <td class="mono">{p.image ?? '—'}</td>
                <td class="mono">{p.mountOptions?.join(', ') ?? '—'}</td>
                <td>
                  <Refs refs={p.pvcs} href={pvcHref} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p class="muted">No mountPodPatch entries.</p>
      )}
      <h3>config.yaml</h3>
      <form onSubmit={(e) => void save(e)}>
        <label for="cfg-text">
          config.yaml {allowWrites ? '(edit, then save with your own credentials)' : '(read-only)'}
        </label>
        <textarea
          id="cfg-text"
          readOnly={!allowWrites}
          value={edited}
          onInput={(e) => setText((e.target as HTMLTextAreaElement).value)}
        />
        {changes.length > 0 && (
          <pre class="mono" aria-label="what saving changes">
            {changes
              .filter((d) => d.op !== ' ')
              .map((d, i) => (
                <div key={i} class={d.op === '-' ? 'diff-del' : 'diff-add'}>
                  {d.op} {d.line}
                </div>
              ))}
          </pre>
        )}
        {allowWrites && (
          <button type="submit" disabled={!changes.length}>
            Save config.yaml
          </button>
        )}
        {result.error && <Notice error>{result.error}</Notice>}
        {result.ok && <Notice>{result.ok}</Notice>}
      </form>
    </section>
  );
}

function UpgradeActions(props: { upgrade: UpgradeRow }) {
  const [error, setError] = useState('');
  const act = async (action: 'pause' | 'resume' | 'abort') => {
    setError('');
    try {
      await send('POST', `api/upgrades/${encodeURIComponent(props.upgrade.name)}/${action}`, {});
    } catch (err) {
      setError((err as Error).message);
    }
  };
  const finished = ['Completed', 'Failed', 'Aborted'].includes(props.upgrade.status.phase ?? '');
  return (
    <span>
      {props.upgrade.spec.paused ? (
        <button class="secondary" disabled={finished} onClick={() => void act('resume')}>
          Resume
        </button>
      ) : (
        <button class="secondary" disabled={finished} onClick={() => void act('pause')}>
          Pause
        </button>
      )}{' '}
      <button class="secondary" disabled={finished || props.upgrade.spec.abort} onClick={() => void act('abort')}>
        Abort
      </button>
      {error && <Notice error>{error}</Notice>}
    </span>
  );
}

export function UpgradesPage({ view, allowWrites }: PageProps) {
  return (
    <section aria-labelledby="upgs-h">
      <h2 id="upgs-h">Upgrades</h2>
      {allowWrites && (
        <>
          <h3>New rollout</h3>
          <UpgradeForm view={view} />
        </>
      )}
      <table>
        <caption>JuiceFSUpgrade objects ({view.upgrades.length})</caption>
        <thead>
          <tr>
            <th scope="col">upgrade</th>
            <th scope="col">kind</th>
            <th scope="col">target</th>
            <th scope="col">phase</th>
            <th scope="col">progress</th>
            {allowWrites && <th scope="col">actions</th>}
          </tr>
        </thead>
        <tbody>
          {view.upgrades.map((u) => (
            <tr key={u.name}>
              <td>
                <a href={upgradeHref(u.name)}>{u.name}</a>
              </td>
              <td>{u.spec.kind}</td>
              <td class="mono">{u.spec.target.image ?? '(from settings)'}</td>
              <td>
                <Phase phase={u.status.phase ?? 'Pending'} />
              </td>
              <td>
                <UpgradeBar upgrade={u} />
              </td>
              {allowWrites && (
                <td>
                  <UpgradeActions upgrade={u} />
                </td>
              )}
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

export function UpgradePage(props: PageProps & { name: string }) {
  const u = props.view.upgrades.find((x) => x.name === props.name);
  if (!u) return <Notice error>No upgrade {props.name}.</Notice>;
  return (
    <section aria-labelledby="upg-h">
      <h2 id="upg-h">Upgrade {u.name}</h2>
      <dl class="facts">
        <dt>phase</dt>
        <dd>
          <Phase phase={u.status.phase ?? 'Pending'} /> {u.status.message}
        </dd>
        <dt>target</dt>
        <dd class="mono">{u.spec.target.image ?? '(from settings)'}</dd>
        <dt>progress</dt>
        <dd>
          <UpgradeBar upgrade={u} />
        </dd>
        <dt>selector</dt>
        <dd class="mono">{JSON.stringify(u.spec.selector ?? {})}</dd>
        <dt>strategy</dt>
        <dd class="mono">{JSON.stringify(u.spec.strategy ?? {})}</dd>
      </dl>
      {props.allowWrites && <UpgradeActions upgrade={u} />}
      <table>
        <caption>Pods</caption>
        <thead>
          <tr>
            <th scope="col">pod</th>
            <th scope="col">phase</th>
            <th scope="col">containers</th>
            <th scope="col">message</th>
          </tr>
        </thead>
        <tbody>
          {(u.status.pods ?? []).map((p) => (
            <tr key={p.uid}>
              <td>
                <a href={podHref(ref(p.namespace, p.name))}>{ref(p.namespace, p.name)}</a>
              </td>
              <td>
                <Phase phase={p.phase} />
              </td>
              <td class="mono">
                {p.containers.map((c) => (
                  <div key={c.name}>
                    {c.name}: {c.fromImage} → {c.toImage}
                  </div>
                ))}
              </td>
              <td>{p.message ?? ''}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h3>Events</h3>
      <Events
        events={props.view.events.filter((e) => e.kind === 'JuiceFSUpgrade' && e.name === u.name)}
        caption="Events of this upgrade"
      />
    </section>
  );
}

export function EventsPage({ view }: PageProps) {
  return (
    <section aria-labelledby="ev-h">
      <h2 id="ev-h">Events</h2>
      <Events events={view.events} caption="Newest events of JuiceFS pods, volumes and upgrades" />
    </section>
  );
}
