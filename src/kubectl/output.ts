// Output as kubectl prints it: a table with upper-case headers and columns two spaces apart (-o wide adds
// columns), or the objects as JSON / YAML (-o json|yaml: a List, as kubectl get prints several objects).
import { stringify } from 'yaml';
import { UsageError } from './cluster.js';

export type OutputFormat = 'table' | 'wide' | 'json' | 'yaml';

export function parseOutput(value: string | undefined): OutputFormat {
  if (value === undefined || value === '') return 'table';
  if (value === 'wide' || value === 'json' || value === 'yaml') return value;
  throw new UsageError(`unable to match a printer suitable for the output format "${value}": use json, yaml or wide`);
}

export interface Column<T> {
  header: string;
  value: (row: T) => string;
  /** Only with -o wide. */
  wide?: boolean;
}

export function table<T>(rows: T[], columns: Column<T>[], wide: boolean): string {
  const cols = columns.filter((c) => wide || !c.wide);
  const cells = [cols.map((c) => c.header), ...rows.map((r) => cols.map((c) => c.value(r) || '<none>'))];
  const widths = cols.map((_, i) => Math.max(...cells.map((row) => row[i].length)));
  return (
    cells
      .map((row) =>
        row
          .map((cell, i) => (i === cols.length - 1 ? cell : cell.padEnd(widths[i])))
          .join('   ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

/** -o json / yaml of rows: a kubectl-like List. */
export function serialise(kind: string, items: unknown[], format: 'json' | 'yaml'): string {
  const list = { apiVersion: 'v1', kind: 'List', metadata: { listKind: kind }, items };
  return format === 'json' ? `${JSON.stringify(list, null, 2)}\n` : stringify(list);
}

/** kubectl's AGE: 5s, 3m, 2h, 4d. */
export function age(from: string | Date | undefined, now = Date.now()): string {
  if (!from) return '<unknown>';
  const s = Math.max(0, Math.floor((now - new Date(from).getTime()) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 2 * 3600) return `${Math.floor(s / 60)}m`;
  if (s < 48 * 3600) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}
