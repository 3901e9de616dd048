// npm test: unit, golden and webhook tests in parallel, then the control-plane
// tests one at a time (each starts its own kube-apiserver). The Go-built peers
// are made ready first, so a cold build is not counted against a test's
// timeout. Ends with the plain line "N passed, N failed".
import { spawnSync } from 'node:child_process';

const run = (cmd, args) => {
  const res = spawnSync(cmd, args, {
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
    maxBuffer: 512 * 1024 * 1024,
  });
  process.stdout.write(res.stdout ?? '');
  return res;
};

const build = spawnSync('bash', ['test/env/build.sh'], { stdio: 'inherit' });
if (build.status !== 0) {
  console.log('0 passed, 1 failed');
  process.exit(1);
}

const suites = [
  ['unit, golden and webhook', ['test/unit/*.test.ts', 'test/golden/*.test.ts', 'test/webhook/*.test.ts']],
  ['control plane', ['--jobs=1', 'test/e2e/*.test.ts']],
];
let passed = 0;
let failed = 0;
let status = 0;
for (const [name, args] of suites) {
  console.log(`\n## ${name} tests`);
  const res = run('npx', ['tap', '--reporter=tap', ...args]);
  // tap's tap reporter closes with "# { total: N, pass: N, fail: N, … }".
  const m = /# \{ total: (\d+), pass: (\d+)(?:, fail: (\d+))?/.exec(res.stdout ?? '');
  if (!m) {
    failed += 1;
    status = 1;
    console.log(`# ${name}: no summary from tap (exit ${res.status})`);
    continue;
  }
  const fails = Number(m[3] ?? 0);
  passed += Number(m[2]);
  // A test file that crashed before its assertions still fails the run.
  failed += fails === 0 && res.status !== 0 ? 1 : fails;
  if (res.status !== 0) status = 1;
}
console.log(`\n${passed} passed, ${failed} failed`);
process.exit(status || (failed ? 1 : 0));
