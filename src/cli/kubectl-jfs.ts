#!/usr/bin/env node
// kubectl-jfs: the `kubectl jfs` plugin (kubectl runs any kubectl-<name> on PATH). Finds, diagnoses and upgrades
// JuiceFS mounts with the user's own kubeconfig; it loads only src/kubectl/ and the pure modules under it, never
// the webhook, controller or node code (test/unit/kubectl-jfs-imports.test.ts).
import { Command, Option } from 'commander';
import { PACKAGE_VERSION } from '../util/package-root.js';
import { diagnose } from '../diagnose/diagnose.js';
import type { DebugKind } from '../diagnose/types.js';
import { SYSTEM_NAMESPACE } from '../contract/keys.js';
import { apiErrorMessage, connect, UsageError, type GlobalFlags } from '../kubectl/cluster.js';
import { gatherDebug } from '../kubectl/gather.js';
import { listMounts, listPods, listPvcs, listPvs } from '../kubectl/lists.js';
import { parseOutput, serialise } from '../kubectl/output.js';
import { renderDiagnosis } from '../kubectl/render-diagnosis.js';
import { accessLog, warmup } from '../kubectl/client-exec.js';
import {
  createUpgrade,
  readUpgrade,
  renderProgress,
  setUpgradeFlag,
  watchUpgrade,
  type UpgradeFlags,
} from '../kubectl/upgrade.js';

interface Flags extends GlobalFlags {
  output?: string;
  mountNamespace: string;
}

/** Ctrl-C: aborts what streams or watches (the first time); a second Ctrl-C exits at once. */
function interrupt(): AbortSignal {
  const ac = new AbortController();
  process.once('SIGINT', () => {
    ac.abort();
    process.once('SIGINT', () => process.exit(130));
  });
  return ac.signal;
}

const DEBUG_KINDS: Record<string, DebugKind> = {
  pod: 'pod',
  pods: 'pod',
  po: 'pod',
  pvc: 'pvc',
  persistentvolumeclaim: 'pvc',
  pv: 'pv',
  persistentvolume: 'pv',
};

export function buildKubectlJfs(): Command {
  const program = new Command('kubectl-jfs')
    .description('kubectl jfs: find, diagnose and upgrade JuiceFS mounts (sidecars and Mount Pods)')
    .version(PACKAGE_VERSION)
    .option('--kubeconfig <file>', 'kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)')
    .option('--context <name>', 'the kubeconfig context to use')
    .option('-n, --namespace <ns>', "namespace (default: the context's, else default)")
    .option('-A, --all-namespaces', 'every namespace (lists, upgrade --selector)')
    .option('-o, --output <format>', 'json, yaml or wide')
    .addOption(
      new Option('--mount-namespace <ns>', 'namespace of Mount Pods and the JuiceFS components')
        .env('JFS_SYSTEM_NAMESPACE')
        .default(SYSTEM_NAMESPACE),
    )
    .showHelpAfterError();
  const flags = (cmd: Command) => cmd.optsWithGlobals<Flags>();
  const print = (text: string) => process.stdout.write(text);

  const list = (name: string, alias: string, description: string, run: typeof listPods) =>
    program
      .command(name)
      .alias(alias)
      .description(description)
      .action(async (_o: unknown, cmd: Command) => {
        const f = flags(cmd);
        print(await run(connect(f), { output: parseOutput(f.output), systemNamespace: f.mountNamespace }));
      });
  list('pods', 'po', 'app pods using JuiceFS: mode, PVCs, sidecar or Mount Pod, client version, status', listPods);
  list('mounts', 'mount', 'Mount Pods: their PV, node, references and the app pods behind them', listMounts);
  list('pvc', 'pvcs', 'JuiceFS PersistentVolumeClaims and the pods using them', listPvcs);
  list('pv', 'pvs', 'JuiceFS PersistentVolumes, their claims and Mount Pods', listPvs);

  program
    .command('debug')
    .description('walk pod → PVC → PV/StorageClass → Secret → sidecar or Mount Pod → mount; say what is wrong')
    .argument('<kind>', 'pod, pvc or pv')
    .argument('<name>')
    .option('--tail <n>', 'log lines per container', (v) => Number.parseInt(v, 10), 20)
    .option('--no-exec', "do not exec df in the app containers (the mount's state then goes unchecked)")
    .action(async (kindText: string, name: string, o: { tail: number; exec: boolean }, cmd: Command) => {
      const kind = DEBUG_KINDS[kindText.toLowerCase()];
      if (!kind) throw new UsageError(`debug: "${kindText}" is not pod, pvc or pv`);
      const f = flags(cmd);
      const format = parseOutput(f.output);
      const c = connect(f);
      const gathered = await gatherDebug(
        c,
        { kind, namespace: kind === 'pv' ? undefined : c.namespace, name },
        { systemNamespace: f.mountNamespace, tail: o.tail, checkMounts: o.exec },
      );
      const d = diagnose(gathered);
      if (format === 'json' || format === 'yaml') print(serialise('JuiceFSDiagnosis', [d], format));
      else print(renderDiagnosis(d));
      // Like a check: non-zero when something is wrong, so scripts can tell.
      process.exitCode = d.healthy ? 0 : 3;
    });

  program
    .command('accesslog')
    .description("stream the JuiceFS access log of a pod's volume (Ctrl-C stops)")
    .argument('<pod>', 'an app pod (or a Mount Pod)')
    .option('--mount-path <path>', 'which JuiceFS volume, when the pod has several')
    .action(async (pod: string, o: { mountPath?: string }, cmd: Command) => {
      const f = flags(cmd);
      process.exitCode = await accessLog(
        connect(f),
        pod,
        { mountPath: o.mountPath, systemNamespace: f.mountNamespace },
        { stdout: process.stdout, stderr: process.stderr, signal: interrupt() },
      );
    });

  program
    .command('warmup')
    .description("warm the client's cache with PATH of the volume (default: all of it), streaming progress")
    .argument('<pod>', 'an app pod (or a Mount Pod)')
    .argument('[path]', 'inside the volume')
    .option('--mount-path <path>', 'which JuiceFS volume, when the pod has several')
    .option('--threads <n>', 'juicefs warmup --threads', (v) => Number.parseInt(v, 10))
    .action(
      async (pod: string, path: string | undefined, o: { mountPath?: string; threads?: number }, cmd: Command) => {
        const f = flags(cmd);
        process.exitCode = await warmup(
          connect(f),
          pod,
          path,
          { mountPath: o.mountPath, systemNamespace: f.mountNamespace, threads: o.threads },
          { stdout: process.stdout, stderr: process.stderr, signal: interrupt() },
        );
      },
    );

  const upgrade = program
    .command('upgrade')
    .description(
      'upgrade the JuiceFS client of a pod, or of the pods a selector picks (a JuiceFSUpgrade), and watch it',
    )
    .argument('[pod]', 'an app pod (its sidecar, or with --recreate/--binary its Mount Pod)')
    .option('-l, --selector <selector>', 'app pods by label, e.g. app=web (with -A: in every namespace)')
    .option('--recreate', 'Mount Pod mode: a new Mount Pod takes the FUSE connection over')
    .option('--binary', 'Mount Pod mode: a new client binary in the running Mount Pod')
    .option('--image <image>', 'the new client image (default: what the ConfigMap / PV / StorageClass now say)')
    .option('--max-unavailable <n>', 'pods unready at once: a number or N%')
    .option('--partition <n>', 'the last N selected pods keep their client')
    .option('--name <name>', 'name of the JuiceFSUpgrade (default: generated)')
    .option('--no-watch', 'create it and return')
    .action(async (pod: string | undefined, o: UpgradeFlags, cmd: Command) => {
      const f = flags(cmd);
      const c = connect(f);
      const name = await createUpgrade(c, pod, { ...o, systemNamespace: f.mountNamespace });
      process.stderr.write(`juicefsupgrade.${'jfs-sidecar.juicefs.com'}/${name} created\n`);
      if (!o.watch) return;
      process.exitCode = await watchAndReport(c, name);
    });
  upgrade
    .command('status')
    .description('the progress of an upgrade (-w: watch it)')
    .argument('<name>')
    .option('-w, --watch', 'watch until it ends')
    .action(async (name: string, o: { watch?: boolean }, cmd: Command) => {
      const f = flags(cmd);
      const c = connect(f);
      const format = parseOutput(f.output);
      if (format === 'json' || format === 'yaml') {
        print(serialise('JuiceFSUpgrade', [await readUpgrade(c, name)], format));
        return;
      }
      if (o.watch) process.exitCode = await watchAndReport(c, name);
      else print(`${renderProgress(await readUpgrade(c, name)).join('\n')}\n`);
    });
  for (const [verb, what] of [
    ['pause', 'start no new pod (pods swapping finish)'],
    ['resume', 'go on after a pause'],
    ['abort', 'start no new pod, ever (pods swapping finish)'],
  ] as const)
    upgrade
      .command(verb)
      .description(what)
      .argument('<name>')
      .action(async (name: string, _o: unknown, cmd: Command) => {
        await setUpgradeFlag(connect(flags(cmd)), name, verb);
        process.stdout.write(`juicefsupgrade/${name} ${verb === 'abort' ? 'aborted' : `${verb}d`}\n`);
      });
  return program;
}

/** Watches with the live display; the exit code says how it ended (0 Completed, 1 otherwise, 130 Ctrl-C). */
async function watchAndReport(c: ReturnType<typeof connect>, name: string): Promise<number> {
  const phase = await watchUpgrade(
    c,
    name,
    { write: (s) => process.stderr.write(s), isTTY: process.stderr.isTTY === true },
    interrupt(),
  );
  if (phase === undefined) {
    process.stderr.write(`stopped watching; the upgrade goes on: kubectl jfs upgrade status ${name} -w\n`);
    return 130;
  }
  process.stdout.write(`juicefsupgrade/${name} ${phase}\n`);
  if (phase === 'Invalid') {
    const u = await readUpgrade(c, name);
    const unsupported = /no actuator for kind/.test(u.status?.message ?? '');
    process.stderr.write(
      `error: ${unsupported ? `kind ${u.spec.kind} is not supported by this cluster's upgrade controller` : 'the upgrade is invalid'}: ${u.status?.message ?? ''}\n`,
    );
  }
  return phase === 'Completed' ? 0 : 1;
}

buildKubectlJfs()
  .parseAsync(process.argv)
  .catch((err: unknown) => {
    const e = err as Error;
    // A user's mistake or an API refusal is one line; anything else is a bug worth its stack.
    const api = typeof (err as { code?: unknown }).code === 'number';
    const text = e instanceof UsageError ? e.message : api ? apiErrorMessage(err) : (e.stack ?? String(err));
    process.stderr.write(`error: ${text}\n`);
    process.exit(1);
  });
