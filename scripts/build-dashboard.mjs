// The dashboard's page: src/dashboard/ui/ (Preact, TSX) bundled by esbuild into dist/src/dashboard/public/, beside
// the server that serves it (src/dashboard/run.ts), with index.html and app.css. Run by `npm run build`; prints the
// bundle's size, raw and gzip (ADR 0023).
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';

const root = path.resolve(import.meta.dirname, '..');
const ui = path.join(root, 'src/dashboard/ui');
const out = path.join(root, 'dist/src/dashboard/public');
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [path.join(ui, 'main.tsx')],
  outfile: path.join(out, 'app.js'),
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2020',
  jsx: 'automatic',
  jsxImportSource: 'preact',
  legalComments: 'none',
  logLevel: 'warning',
});
for (const f of ['index.html', 'app.css']) copyFileSync(path.join(ui, f), path.join(out, f));
const sizes = Object.fromEntries(
  ['app.js', 'app.css', 'index.html'].map((f) => {
    const body = readFileSync(path.join(out, f));
    return [f, { raw: body.length, gzip: gzipSync(body, { level: 9 }).length }];
  }),
);
writeFileSync(path.join(out, 'sizes.json'), `${JSON.stringify(sizes, null, 2)}\n`);
if (!process.env.npm_config_silent && process.env.npm_config_loglevel !== 'silent') {
  const total = Object.values(sizes).reduce((a, s) => ({ raw: a.raw + s.raw, gzip: a.gzip + s.gzip }), {
    raw: 0,
    gzip: 0,
  });
  process.stderr.write(`dashboard bundle: ${total.raw} bytes, ${total.gzip} gzip\n`);
}
