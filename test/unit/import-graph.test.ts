// The import graph of src/, read from the sources (static imports, `export … from`,
// `import()` and `import('…')` types): product code never imports the harness
// (src/local/) or anything outside src/; no import runs up the layers; no
// cycle between folders. A failure lists the offending edges, file to file.
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import ts from 'typescript';

const ROOT = path.resolve(import.meta.dirname, '../..');
const SRC = path.join(ROOT, 'src');

/**
 * The layers of src/, bottom first, written once. A folder may import only
 * folders of a lower rank; folders of one rank are siblings and do not import
 * each other (give one its own rank if that ever becomes needed).
 */
const LAYERS: string[][] = [
  // Pure vocabulary: keys, quantities, durations, path patterns (contract); generic helpers and the
  // package's own files, e.g. its version and where the proto lives (util). Neither imports anything of ours.
  ['contract', 'util'],
  // The ConfigMap schema and PVC selectors: parsed with the contract's keys and quantities.
  ['config'],
  // The mount spec (settings → client container, options, format step), shared by sidecar and Mount Pod;
  // built from the contract and the config.
  ['mount'],
  // PVC → PV / StorageClass → Secret over a ClusterView, producing ResolvedVolume (its source and pod binding).
  ['resolve'],
  // The pure injector: pod + resolved volumes → injected pod; inject-with-view.ts composes resolving and
  // injecting (the seam the webhook and the offline command share), so inject sits above resolve.
  ['inject'],
  // The upgrade object's types, the rollout planner and the upgrade's patches: pure, above config (label
  // selectors); the controller's reconciler and actuators apply what they say.
  ['upgrade'],
  // The diagnosis (`kubectl jfs debug`, the dashboard): gathered objects in, the chain and findings out; pure, over
  // the contract's keys and names.
  ['diagnose'],
  // Adapters to the outside world: the API (k8s: informer caches implementing resolve's ClusterView),
  // the juicefs client and /proc mounts (juicefs: uses inject's option parsing), the CSI gRPC plumbing (csi),
  // the FUSE fd holder speaking juicefs's JFS_SUPER_COMM over SCM_RIGHTS (fdpass, ADR 0016).
  ['k8s', 'juicefs', 'csi', 'fdpass'],
  // Self-managed certificates: Secrets and the MutatingWebhookConfiguration through k8s.
  ['certs'],
  // The shells, each a process or command of its own: the admission webhook, the CSI node service
  // (Mount Pods), the offline `inject` over YAML files.
  // `kubectl jfs` (kubectl): the user's own credentials, lists and the diagnosis's gathering shell, exec streams,
  // the JuiceFSUpgrade it creates and watches; it loads none of the other shells.
  ['webhook', 'node', 'offline', 'kubectl'],
  // The CSI controller; `controller --node-id` also serves the node service on its socket
  // (a combined driver), so it sits above node.
  ['controller'],
  // The dashboard (a shell of its own): informers, a JSON/SSE API and the page; it reads the Mount Pods'
  // references as the node service writes them (node) and the upgrade object (upgrade).
  ['dashboard'],
  // The harness: a local control plane, the real node, the stacks of processes. It drives the
  // product from above (and its processes through the CLI binary); product code never imports it.
  ['local'],
  // The `jfs-sidecar` executable: one subcommand per shell; `local` loads the harness (below).
  ['cli'],
];

/** The one harness import product code may make: the CLI's `local` command, dynamic, so the image runs without it. */
const HARNESS_ENTRY = { from: 'src/cli/main.ts', to: 'src/local/local-cluster.ts', dynamic: true };

interface Edge {
  from: string;
  to: string;
  spec: string;
  dynamic: boolean;
  /** `import type`, `export type … from`, `import('…')` in a type: erased at run time, a dependency all the same. */
  typeOnly: boolean;
  line: number;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

const rel = (file: string) => path.relative(ROOT, file).split(path.sep).join('/');

/** Every import of one file; `problems` gets what cannot be checked (computed specifiers, unresolved files). */
function importsOf(file: string, problems: string[]): Edge[] {
  const text = readFileSync(file, 'utf8');
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const edges: Edge[] = [];
  const add = (node: ts.Node, spec: ts.Expression | undefined, dynamic: boolean, typeOnly = false) => {
    const line = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1;
    if (!spec || !ts.isStringLiteralLike(spec)) {
      problems.push(`${rel(file)}:${line}: import with a computed specifier (the graph cannot be checked)`);
      return;
    }
    const s = spec.text;
    if (!s.startsWith('.') && !s.startsWith('/')) return; // a package or node: builtin
    const target = path.resolve(path.dirname(file), s).replace(/\.js$/, '.ts');
    if (!existsSync(target)) {
      problems.push(`${rel(file)}:${line}: '${s}' does not resolve to a .ts file`);
      return;
    }
    edges.push({ from: rel(file), to: rel(target), spec: s, dynamic, typeOnly, line });
  };
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node)) add(node, node.moduleSpecifier, false, !!node.importClause?.isTypeOnly);
    else if (ts.isExportDeclaration(node) && node.moduleSpecifier)
      add(node, node.moduleSpecifier, false, node.isTypeOnly);
    else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference))
      add(node, node.moduleReference.expression, false);
    else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword)
      add(node, node.arguments[0], true);
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument))
      add(node, node.argument.literal, false, true);
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return edges;
}

/** `src/<folder>/…` → folder; undefined outside src/ or for a file directly in src/. */
function folderOf(file: string): string | undefined {
  const m = /^src\/([^/]+)\/.+/.exec(file);
  return m?.[1];
}

const show = (e: Edge) => `${e.from}:${e.line} → ${e.to}${e.dynamic ? ' (dynamic)' : ''}`;

const problems: string[] = [];
const files = sourceFiles(SRC);
const edges = files.flatMap((f) => importsOf(f, problems));
const rank = new Map(LAYERS.flatMap((folders, i) => folders.map((f) => [f, i] as const)));

t.test('the reader sees the imports it must see', async (t) => {
  t.same(problems, [], 'every import has a literal specifier that resolves');
  t.ok(files.length > 40, `${files.length} source files read`);
  t.ok(
    edges.some((e) => e.from === 'src/cli/main.ts' && e.to === 'src/webhook/run.ts' && e.dynamic),
    'dynamic imports are read (the CLI loads each shell on demand)',
  );
  t.ok(
    edges.some((e) => e.typeOnly),
    'type-only imports are read',
  );
});

t.test('every folder of src/ has a layer, and every file is in a folder', async (t) => {
  const folders = [...new Set(files.map((f) => folderOf(rel(f)) ?? `(directly in src/: ${rel(f)})`))].sort();
  t.same(
    folders.filter((f) => !rank.has(f)),
    [],
    `folders without a rank: add them to LAYERS in ${rel(import.meta.filename)}`,
  );
});

t.test('product code never imports the harness or the tests', async (t) => {
  const offending = edges.filter((e) => {
    const from = folderOf(e.from);
    if (!e.to.startsWith('src/')) return true; // test/, bench/, anything outside the product
    if (from === 'local' || folderOf(e.to) !== 'local') return false;
    return !(e.from === HARNESS_ENTRY.from && e.to === HARNESS_ENTRY.to && e.dynamic === HARNESS_ENTRY.dynamic);
  });
  t.same(offending.map(show), [], 'imports from product code into src/local/ or outside src/');
  const entry = edges.filter((e) => e.from === HARNESS_ENTRY.from && e.to === HARNESS_ENTRY.to);
  t.same(
    entry.map((e) => e.dynamic),
    [true],
    `the one allowed harness import (${HARNESS_ENTRY.from} → ${HARNESS_ENTRY.to}) exists, once, and is dynamic`,
  );
});

t.test('no import runs up the layers or sideways within a layer', async (t) => {
  const offending = edges.filter((e) => {
    const from = folderOf(e.from);
    const to = folderOf(e.to);
    if (!from || !to || from === to || !rank.has(from) || !rank.has(to)) return false;
    return rank.get(to)! >= rank.get(from)!;
  });
  t.same(
    offending.map(
      (e) =>
        `${show(e)}  [${folderOf(e.from)} rank ${rank.get(folderOf(e.from)!)}, ${folderOf(e.to)} rank ${rank.get(folderOf(e.to)!)}]`,
    ),
    [],
    'imports whose target folder is not below the importing one',
  );
});

t.test('no cycles between folders', async (t) => {
  const graph = new Map<string, Map<string, Edge>>();
  for (const e of edges) {
    const from = folderOf(e.from);
    const to = folderOf(e.to);
    if (!from || !to || from === to) continue;
    if (!graph.has(from)) graph.set(from, new Map());
    if (!graph.get(from)!.has(to)) graph.get(from)!.set(to, e);
  }
  // Depth-first search; a back edge closes a cycle, printed with one file edge per step.
  const cycles: string[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const dfs = (n: string) => {
    state.set(n, 'open');
    stack.push(n);
    for (const m of graph.get(n)?.keys() ?? []) {
      if (state.get(m) === 'open') {
        const loop = [...stack.slice(stack.indexOf(m)), m];
        cycles.push(
          loop
            .slice(0, -1)
            .map((a, i) => `${a} → ${loop[i + 1]} (${show(graph.get(a)!.get(loop[i + 1])!)})`)
            .join('; '),
        );
      } else if (!state.has(m)) dfs(m);
    }
    stack.pop();
    state.set(n, 'done');
  };
  for (const n of [...graph.keys()].sort()) if (!state.has(n)) dfs(n);
  t.same(cycles, [], 'cycles between folders of src/');
});

t.test(
  'every product file is used by the product (a helper only the harness uses belongs in src/local/)',
  async (t) => {
    // Reachable from the executable through product imports, the harness left out.
    const seen = new Set<string>();
    // The two executables: jfs-sidecar and the kubectl plugin.
    const next = ['src/cli/main.ts', 'src/cli/kubectl-jfs.ts'];
    while (next.length) {
      const f = next.pop()!;
      if (seen.has(f)) continue;
      seen.add(f);
      for (const e of edges) if (e.from === f && folderOf(e.to) !== 'local') next.push(e.to);
    }
    const unused = files.map(rel).filter((f) => folderOf(f) !== 'local' && !seen.has(f));
    t.same(
      unused.map(
        (f) =>
          `${f} (imported by: ${
            edges
              .filter((e) => e.to === f)
              .map((e) => e.from)
              .join(', ') || 'nothing'
          })`,
      ),
      [],
      'product files the executable never loads',
    );
  },
);
