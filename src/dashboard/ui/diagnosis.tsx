// The diagnosis of `kubectl jfs debug` (src/diagnose/) on a pod's, PVC's or PV's page: what is wrong and the next
// step, the chain walked, the evidence. Fetched when the page opens and on request, never on a timer.
import { useEffect, useState } from 'preact/hooks';
import type { Diagnosis as Result } from '../../diagnose/types.js';
import { get } from './api.js';

export function Diagnosis(props: { kind: 'pod' | 'pvc' | 'pv'; namespace?: string; name: string }) {
  const [result, setResult] = useState<(Result & { readAs?: string }) | undefined>(undefined);
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const run = async () => {
    setBusy(true);
    setError('');
    try {
      const ns = encodeURIComponent(props.namespace ?? '-');
      setResult(
        (await get(`api/diagnose/${props.kind}/${ns}/${encodeURIComponent(props.name)}`)) as Result & {
          readAs?: string;
        },
      );
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  useEffect(() => {
    setResult(undefined);
    void run();
  }, [props.kind, props.namespace, props.name]);
  return (
    <section aria-labelledby="diag-h">
      <h3 id="diag-h">Diagnosis</h3>
      <button class="secondary" disabled={busy} onClick={() => void run()}>
        {busy ? 'Diagnosing…' : 'Diagnose again'}
      </button>
      {error && (
        <p class="notice error" role="alert">
          {error}
        </p>
      )}
      {result && (
        <>
          <p class={result.healthy ? 'ok' : 'bad'} role="status">
            {result.summary}
          </p>
          {result.findings.length > 0 && (
            <table>
              <caption>Findings (read with {result.readAs ?? 'the dashboard'})</caption>
              <thead>
                <tr>
                  <th scope="col">severity</th>
                  <th scope="col">about</th>
                  <th scope="col">cause</th>
                  <th scope="col">next step</th>
                  <th scope="col">evidence</th>
                </tr>
              </thead>
              <tbody>
                {result.findings.map((f, i) => (
                  <tr key={`${f.code}-${i}`}>
                    <td class={f.severity === 'error' ? 'bad' : f.severity === 'warning' ? 'warn' : undefined}>
                      {f.severity}
                    </td>
                    <td>
                      {f.subject.kind} {f.subject.namespace ? `${f.subject.namespace}/` : ''}
                      {f.subject.name}
                    </td>
                    <td>{f.cause}</td>
                    <td class="mono">{f.next}</td>
                    <td class="mono">{f.evidence.join('\n')}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          <table>
            <caption>The chain walked</caption>
            <thead>
              <tr>
                <th scope="col">object</th>
                <th scope="col">status</th>
                <th scope="col">details</th>
              </tr>
            </thead>
            <tbody>
              {result.chain.map((s, i) => (
                <tr key={i}>
                  <td>
                    {s.subject.kind} {s.subject.namespace ? `${s.subject.namespace}/` : ''}
                    {s.subject.name}
                  </td>
                  <td class={s.ok ? 'ok' : 'bad'}>{s.status}</td>
                  <td>{s.details.join('; ')}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
