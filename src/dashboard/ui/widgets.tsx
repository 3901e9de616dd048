// Small pieces the pages share: links between objects, status words, tables, the log viewer, the pictures.
import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import type { ClientRow, EventRow, NodeRow, UpgradeRow } from '../view.js';

const enc = encodeURIComponent;
export const podHref = (ref: string) => `#/pod/${ref.split('/').map(enc).join('/')}`;
export const pvcHref = (ref: string) => `#/pvc/${ref.split('/').map(enc).join('/')}`;
export const pvHref = (name: string) => `#/pv/${enc(name)}`;
export const scHref = (name: string) => `#/sc/${enc(name)}`;
export const upgradeHref = (name: string) => `#/upgrade/${enc(name)}`;

export function Ref(props: { href: string; children: ComponentChildren }) {
  return <a href={props.href}>{props.children}</a>;
}

/** A list of links, or a dash when there are none. */
export function Refs(props: { refs: string[] | undefined; href: (r: string) => string }) {
  if (!props.refs?.length) return <span class="muted">—</span>;
  return (
    <span>
      {props.refs.map((r, i) => (
        <span key={r}>
          {i > 0 && ', '}
          <a href={props.href(r)}>{r}</a>
        </span>
      ))}
    </span>
  );
}

export function Status(props: { ok: boolean; text: string }) {
  return <span class={props.ok ? 'ok' : 'warn'}>{props.text}</span>;
}

export function phaseClass(phase: string | undefined): string {
  if (!phase) return 'muted';
  if (['Running', 'Bound', 'Completed', 'Succeeded', 'Available'].includes(phase)) return 'ok';
  if (['Failed', 'Invalid', 'Lost', 'Aborted'].includes(phase)) return 'bad';
  return 'warn';
}

export function Phase(props: { phase: string | undefined }) {
  return <span class={phaseClass(props.phase)}>{props.phase ?? 'Unknown'}</span>;
}

export function Notice(props: { error?: boolean; children: ComponentChildren }) {
  return (
    <div class={props.error ? 'notice error' : 'notice'} role={props.error ? 'alert' : 'status'}>
      {props.children}
    </div>
  );
}

export function Clients(props: { clients: ClientRow[]; caption: string }) {
  if (!props.clients.length) return null;
  return (
    <table>
      <caption>{props.caption}</caption>
      <thead>
        <tr>
          <th scope="col">container</th>
          <th scope="col">image</th>
          <th scope="col">ready</th>
          <th scope="col">restarts</th>
          <th scope="col">problem</th>
          <th scope="col">mount flags</th>
        </tr>
      </thead>
      <tbody>
        {props.clients.map((c) => (
          <tr key={c.container}>
            <td>{c.container}</td>
            <td class="mono">{c.image}</td>
            <td>
              <Status ok={c.ready} text={c.ready ? 'ready' : 'not ready'} />
            </td>
            <td>{c.restarts}</td>
            <td>{c.problem ? <span class="bad">{c.problem}</span> : <span class="muted">—</span>}</td>
            <td class="mono">{c.flags.join(' ') || '—'}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function Events(props: { events: EventRow[]; caption: string }) {
  if (!props.events.length) return <p class="muted">No events ({props.caption.toLowerCase()}).</p>;
  return (
    <table>
      <caption>{props.caption}</caption>
      <thead>
        <tr>
          <th scope="col">last seen</th>
          <th scope="col">object</th>
          <th scope="col">type</th>
          <th scope="col">reason</th>
          <th scope="col">message</th>
          <th scope="col">count</th>
        </tr>
      </thead>
      <tbody>
        {props.events.map((e, i) => (
          <tr key={`${e.kind}/${e.namespace}/${e.name}/${e.reason}/${i}`}>
            <td>{new Date(e.last).toLocaleTimeString()}</td>
            <td>
              {e.kind} {e.namespace ? `${e.namespace}/` : ''}
              {e.name}
            </td>
            <td class={e.type === 'Warning' ? 'bad' : undefined}>{e.type}</td>
            <td>{e.reason}</td>
            <td>{e.message}</td>
            <td>{e.count}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** A container's log, followed live over SSE; the newest lines at the bottom, kept to the last 2,000. */
export function LogView(props: { namespace: string; pod: string; containers: string[] }) {
  const [container, setContainer] = useState(props.containers[0] ?? '');
  const [lines, setLines] = useState<string[]>([]);
  const [state, setState] = useState('connecting');
  const pre = useRef<HTMLPreElement>(null);
  useEffect(() => {
    if (!container) return;
    setLines([]);
    setState('following');
    const url = `api/logs/${enc(props.namespace)}/${enc(props.pod)}/${enc(container)}?tail=500`;
    const es = new EventSource(url);
    es.addEventListener('line', (e) => {
      const line = JSON.parse((e as MessageEvent<string>).data) as string;
      setLines((ls) => [...ls.slice(-1999), line]);
    });
    es.addEventListener('end', (e) => {
      setState(`ended: ${JSON.parse((e as MessageEvent<string>).data) as string}`);
      es.close();
    });
    es.onerror = () => setState('reconnecting');
    return () => es.close();
  }, [props.namespace, props.pod, container]);
  useEffect(() => {
    if (pre.current) pre.current.scrollTop = pre.current.scrollHeight;
  }, [lines]);
  const id = `log-${props.pod}`;
  return (
    <section aria-labelledby={`${id}-h`}>
      <h3 id={`${id}-h`}>Logs</h3>
      <form class="inline" onSubmit={(e) => e.preventDefault()}>
        <label>
          Container
          <select value={container} onChange={(e) => setContainer((e.target as HTMLSelectElement).value)}>
            {props.containers.map((c) => (
              <option key={c} value={c}>
                {c}
              </option>
            ))}
          </select>
        </label>
        <span class="muted" role="status">
          {state}, {lines.length} lines
        </span>
      </form>
      <pre class="log" ref={pre} tabIndex={0} role="log" aria-label={`log of container ${container}`}>
        {lines.join('\n')}
      </pre>
    </section>
  );
}

/** Mounts per node: one bar per node, Mount Pods and pods with sidecars stacked. */
export function NodeChart(props: { nodes: NodeRow[] }) {
  const nodes = props.nodes;
  if (!nodes.length) return <p class="muted">No JuiceFS client runs on any node yet.</p>;
  const max = Math.max(1, ...nodes.map((n) => n.mountPods + n.sidecarPods));
  const rowH = 28;
  const labelW = 160;
  const barW = 420;
  const h = nodes.length * rowH + 30;
  const summary = nodes
    .map((n) => `${n.name}: ${n.mountPods} Mount Pods, ${n.sidecarPods} pods with sidecars`)
    .join('; ');
  return (
    <figure>
      <svg width={labelW + barW + 80} height={h} role="img" aria-label={`JuiceFS clients per node. ${summary}`}>
        <title>JuiceFS clients per node</title>
        {nodes.map((n, i) => {
          const y = i * rowH + 4;
          const wm = (n.mountPods / max) * barW;
          const ws = (n.sidecarPods / max) * barW;
          return (
            <g key={n.name}>
              <text x={0} y={y + 15} font-size="13" fill="#1b1f24">
                {n.name.length > 22 ? `${n.name.slice(0, 21)}…` : n.name}
              </text>
              <rect x={labelW} y={y} width={wm} height={20} fill="#0b5cad" />
              <rect x={labelW + wm} y={y} width={ws} height={20} fill="#116329" />
              <text x={labelW + wm + ws + 6} y={y + 15} font-size="13" fill="#1b1f24">
                {n.mountPods} + {n.sidecarPods}
              </text>
            </g>
          );
        })}
        <g transform={`translate(${labelW}, ${nodes.length * rowH + 12})`}>
          <rect width={12} height={12} fill="#0b5cad" />
          <text x={16} y={11} font-size="12" fill="#1b1f24">
            Mount Pods
          </text>
          <rect x={110} width={12} height={12} fill="#116329" />
          <text x={126} y={11} font-size="12" fill="#1b1f24">
            pods with sidecars
          </text>
        </g>
      </svg>
    </figure>
  );
}

/** An upgrade's progress: succeeded, in progress and failed pods out of those in scope. */
export function UpgradeBar(props: { upgrade: UpgradeRow }) {
  const c = props.upgrade.status.counts;
  const total = Math.max(1, c?.inScope ?? 0);
  const done = (c?.succeeded ?? 0) + (c?.current ?? 0);
  const pct = (n: number) => `${Math.min(100, (n / total) * 100)}%`;
  const text = c
    ? `${done} of ${c.inScope} done, ${c.inProgress} in progress, ${c.failed} failed`
    : 'not reconciled yet';
  return (
    <span class="progress">
      <span
        class="bar"
        role="progressbar"
        aria-label={`progress of upgrade ${props.upgrade.name}`}
        aria-valuemin={0}
        aria-valuemax={c?.inScope ?? 0}
        aria-valuenow={done}
        aria-valuetext={text}
      >
        <span class="done" style={{ width: pct(done) }} />
        <span class="active" style={{ width: pct(c?.inProgress ?? 0) }} />
        <span class="failed" style={{ width: pct(c?.failed ?? 0) }} />
      </span>
      <span>{text}</span>
    </span>
  );
}

/** A line diff (longest common subsequence) of two texts: what saving would change. */
export function diffLines(a: string, b: string): { op: ' ' | '-' | '+'; line: string }[] {
  const x = a.split('\n');
  const y = b.split('\n');
  const n = x.length;
  const m = y.length;
  const lcs: number[][] = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--)
    for (let j = m - 1; j >= 0; j--)
      lcs[i][j] = x[i] === y[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const out: { op: ' ' | '-' | '+'; line: string }[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && x[i] === y[j]) {
      out.push({ op: ' ', line: x[i] });
      i++;
      j++;
    } else if (j < m && (i >= n || lcs[i][j + 1] >= lcs[i + 1][j])) out.push({ op: '+', line: y[j++] });
    else out.push({ op: '-', line: x[i++] });
  }
  return out;
}
