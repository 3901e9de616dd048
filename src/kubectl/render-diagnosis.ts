// A diagnosis as text for a terminal: the chain walked (one line per object, ✓ or ✗), the findings with their
// evidence and next step, the clients' last log lines, and the verdict.
import type { Diagnosis } from '../diagnose/types.js';

const MARK = { ok: '✓', bad: '✗' };
const SEVERITY_WORD = { error: 'PROBLEM', warning: 'WARNING', info: 'NOTE' } as const;

export function renderDiagnosis(d: Diagnosis): string {
  const out: string[] = [];
  const t = d.target;
  out.push(`Debugging ${t.kind} ${t.namespace ? `${t.namespace}/` : ''}${t.name}`, '');
  out.push('Chain:');
  for (const s of d.chain) {
    const where = s.subject.namespace && s.subject.kind !== 'Namespace' ? `${s.subject.namespace}/` : '';
    out.push(`  ${s.ok ? MARK.ok : MARK.bad} ${s.subject.kind} ${where}${s.subject.name}: ${s.status}`);
    for (const detail of s.details.filter(Boolean)) out.push(`      ${detail}`);
  }
  out.push('');
  if (d.findings.length === 0) out.push('Findings: none');
  for (const f of d.findings) {
    out.push(`${SEVERITY_WORD[f.severity]} [${f.code}] ${f.cause}`);
    for (const e of f.evidence.filter(Boolean)) out.push(`    | ${e}`);
    out.push(`  Next: ${f.next}`, '');
  }
  for (const l of d.logs) {
    out.push(`Last log lines of ${l.namespace}/${l.pod} ${l.container}${l.previous ? ' (previous run)' : ''}:`);
    for (const line of l.lines) out.push(`    ${line}`);
    out.push('');
  }
  out.push(d.healthy ? `Healthy: ${d.summary}` : `Result: ${d.summary}`);
  return `${out.join('\n')}\n`;
}
