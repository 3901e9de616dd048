#!/usr/bin/env node
// jfs-sidecar: one executable, one subcommand per component. Each subcommand loads its own code with a dynamic
// import in its action, so a process loads only what it runs (the webhook's RSS pays for no controller, node or
// offline code). Keep the static imports below to flags and constants.
import { Command, InvalidArgumentError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { pino, type Logger } from 'pino';
import { PACKAGE_VERSION } from '../util/package-root.js';
import { parseDuration } from '../contract/duration.js';
import { aliasedEnv } from '../contract/env-aliases.js';
import {
  CREDENTIALS_CERT_SECRET_NAME,
  CREDENTIALS_SERVICE_NAME,
  DEFAULT_CREDENTIALS_URL,
  DEFAULT_KUBELET_PLUGIN_ENDPOINT,
  FD_HOLDER_DIR,
  SYSTEM_NAMESPACE,
  VALIDATING_WEBHOOK_CONFIG_NAME,
  WEBHOOK_CERT_SECRET_NAME,
} from '../contract/keys.js';
import type { CredentialsMode } from '../contract/attributes.js';
import type { WebhookRunOptions } from '../webhook/run.js';

const collect = (value: string, previous: string[]) => [...previous, value];

// What commander hands each command's action: one field per option, named as commander camel-cases them.
interface LogFlags {
  logLevel: string;
}
/** The credential broker's settings, the same on the webhook and the controller (ADR 0010). */
interface CredentialsFlags {
  credentials: CredentialsMode;
  credentialsUrl: string;
  credentialsCaFile?: string;
  credentialsImage: string;
}
type WebhookFlags = LogFlags &
  CredentialsFlags &
  Omit<
    WebhookRunOptions,
    'extraHosts' | 'secretNamespaces' | 'clientNames' | 'log' | 'broker' | 'defaultCredentials' | 'validateSecretStatus'
  > & {
    validateSecretStatus: boolean;
    juicefs: string;
    extraHost: string[];
    clientName: string[];
    secretNamespace: string[];
  };
interface InjectFlags extends CredentialsFlags {
  filename: string[];
  config?: string;
  serverless: boolean;
  mountImage?: string;
}
interface ControllerFlags extends LogFlags, CredentialsFlags {
  metricsAddress?: string;
  credentialsBroker: boolean;
  credentialsHost: string;
  credentialsPort: number;
  credentialsCertDir?: string;
  credentialsCertSecretName: string;
  credentialsServiceName: string;
  credentialsExtraHost: string[];
  endpoint: string;
  juicefs: string;
  stateDir: string;
  kubeconfig?: string;
  secretSync: boolean;
  secretNamespace: string[];
  leaderElect: boolean;
  upgrades: boolean;
  stopClassicSidecars: boolean;
  leaderElectionNamespace: string;
  nodeId?: string;
  mountImage?: string;
  checkInterval: number;
}
interface NodeFlags extends LogFlags {
  endpoint: string;
  nodeId: string;
  kubeconfig?: string;
  namespace: string;
  mountImage?: string;
  checkInterval: number;
  registrationDir?: string;
  kubeletPluginEndpoint: string;
  healthAddress?: string;
}

/** --check-interval of the Node service (node, controller --node-id): a Go duration, in ms. */
const checkIntervalOption = () =>
  new Option('--check-interval <duration>', 'how often Mount Pod targets and references are checked (Go duration)')
    .default(5000, '5s')
    .argParser((text) => {
      const ms = parseDuration(text);
      if (!ms) throw new InvalidArgumentError(`"${text}" is not a duration, e.g. 5s`);
      return ms;
    });

/** The broker flags, on the webhook (what it injects) and the controller (what it serves and compares with). */
function credentialsOptions(): Option[] {
  return [
    new Option(
      '--credentials <mode>',
      'credentials mode of volumes whose PV / StorageClass sets no juicefs/credentials',
    )
      .choices(['copy', 'broker'])
      .default('copy'),
    new Option('--credentials-url <url>', "the credential broker's URL, as injected pods reach it").default(
      DEFAULT_CREDENTIALS_URL,
    ),
    new Option(
      '--credentials-ca-file <file>',
      "PEM of the CA of the broker's serving certificate (default: the CA the controller publishes in the " +
        'ConfigMap jfs-sidecar-credentials-ca of --namespace; on the controller: with --credentials-cert-dir)',
    ),
    new Option('--credentials-image <image>', 'image of the credentials fetch step (the jfs-sidecar image)')
      .env('JFS_SIDECAR_IMAGE')
      .default(`jfs-sidecar:${PACKAGE_VERSION}`),
  ];
}

/** The broker client settings from the flags, when a CA file is given. */
function brokerClientFlags(o: CredentialsFlags) {
  return o.credentialsCaFile
    ? { url: o.credentialsUrl, image: o.credentialsImage, caFile: o.credentialsCaFile }
    : undefined;
}

/** On SIGTERM or SIGINT: log, run `close` (drain, stop children), exit 0, or 1 when closing fails. */
function closeOnSignal(close: () => Promise<void>, log: Logger, what = 'shutting down'): void {
  const stop = (signal: string) => {
    log.info({ signal }, what);
    close().then(
      () => process.exit(0),
      (err) => {
        log.error({ err: (err as Error).message }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

/** A command this installation cannot run; its message says why and what to do instead (no stack). */
class HarnessMissing extends Error {
  override name = 'HarnessMissing';
}

/**
 * The local cluster harness (src/local/): in a checkout, not in the image, which does
 * not ship it. The one import of the harness from product code, and a dynamic one, so
 * every other command runs without it (test/unit/import-graph.test.ts names it).
 */
async function loadHarness() {
  try {
    return await import('../local/local-cluster.js');
  } catch (err) {
    if ((err as { code?: string }).code !== 'ERR_MODULE_NOT_FOUND') throw err;
    throw new HarnessMissing(
      `\`jfs-sidecar local\` needs the local cluster harness, which this installation does not include ` +
        `(the image ships only the product): run it from a checkout with \`npm start\` (${(err as Error).message})`,
      { cause: err },
    );
  }
}

/**
 * The controller's broker settings: a serving certificate from files with the CA file of its signer, or (without
 * --credentials-cert-dir) a self-managed one whose CA the controller publishes for the webhook.
 */
function controllerBroker(o: ControllerFlags) {
  const base = { host: o.credentialsHost, port: o.credentialsPort, defaultMountImage: o.mountImage };
  if (o.credentialsCertDir) {
    const client = brokerClientFlags(o);
    if (!client) throw new InvalidArgumentError('--credentials-cert-dir needs --credentials-ca-file');
    return { ...base, certDir: o.credentialsCertDir, client };
  }
  if (o.credentialsCaFile)
    throw new InvalidArgumentError(
      '--credentials-ca-file goes with --credentials-cert-dir (else the CA is self-managed)',
    );
  return {
    ...base,
    client: { url: o.credentialsUrl, image: o.credentialsImage },
    selfManaged: {
      secretName: o.credentialsCertSecretName,
      serviceName: o.credentialsServiceName,
      extraHosts: o.credentialsExtraHost,
    },
  };
}

export function buildCli(): Command {
  const program = new Command('jfs-sidecar')
    .description('JuiceFS on Kubernetes in sidecar mode: admission webhook, CSI controller, Mount Pod node service')
    .version(PACKAGE_VERSION);

  const fdHolder = program
    .command('fd-holder')
    .description("sidecar mode's FUSE fd holder container: keeps each client's /dev/fuse fd across client restarts");
  fdHolder
    .command('run')
    .description('hold the FUSE fd of each named client container (its JFS_SUPER_COMM is <dir>/<name>/fuse.sock)')
    .option('--dir <dir>', 'the shared memory volume', FD_HOLDER_DIR)
    .requiredOption('--name <container>', 'a client container (repeatable)', collect, [])
    .addOption(new Option('--log-level <level>', 'log level').env('LOG_LEVEL').default('info'))
    .action(async (o: { dir: string; name: string[]; logLevel: string }) => {
      const { runFdHolder } = await import('./fd-holder.js');
      const log = pino({ level: o.logLevel, base: { component: 'fd-holder' } });
      const running = await runFdHolder(o.dir, o.name, log);
      closeOnSignal(() => running.close(), log, 'stopping: releasing the held FUSE fds');
    });
  fdHolder
    .command('expect-handover')
    .description('arm the next SIGTERM of the client containers as an in-place upgrade (hand the client over)')
    .option('--dir <dir>', 'the shared memory volume', FD_HOLDER_DIR)
    .option('--name <container>', 'a client container (repeatable; default: all)', collect, [])
    .option('--ttl <seconds>', 'the marker expires after this long', (v) => Number.parseInt(v, 10), 600)
    .action(async (o: { dir: string; name: string[]; ttl: number }) => {
      const { expectHandover } = await import('./fd-holder.js');
      for (const name of expectHandover(o.dir, o.name, o.ttl)) console.log(`handover armed: ${name}`);
    });

  program
    .command('webhook')
    .description('run the mutating admission webhook (HTTPS)')
    .option('--kubeconfig <file>', 'kubeconfig (default: in-cluster or $KUBECONFIG)')
    .option('--host <addr>', 'listen address', '0.0.0.0')
    .option('--port <n>', 'listen port', (v) => Number.parseInt(v, 10), 8443)
    .addOption(
      new Option('--namespace <ns>', 'namespace of the webhook, its Secret and ConfigMap')
        .env('POD_NAMESPACE')
        .default(SYSTEM_NAMESPACE),
    )
    .option('--service-name <name>', 'Service in front of the webhook (certificate DNS names)', 'jfs-sidecar-webhook')
    .option(
      '--webhook-config-name <name>',
      'MutatingWebhookConfiguration to write the CA bundle into',
      'jfs-sidecar-webhook',
    )
    .option(
      '--validating-webhook-config-name <name>',
      'ValidatingWebhookConfiguration (Secrets, PVs) to write the CA bundle into',
      VALIDATING_WEBHOOK_CONFIG_NAME,
    )
    .option(
      '--validate-secret-status',
      'refuse a Secret marked juicefs.com/validate-secret when `juicefs status` cannot reach its metadata engine',
      false,
    )
    .addOption(
      new Option('--juicefs <path>', 'the juicefs client binary (--validate-secret-status)')
        .env('JFS_BINARY')
        .default('juicefs'),
    )
    .option('--cert-secret-name <name>', 'Secret holding the self-managed CA and certificate', WEBHOOK_CERT_SECRET_NAME)
    .option('--cert-dir <dir>', 'use tls.crt/tls.key from this folder (e.g. cert-manager) instead of self-managed ones')
    .option('--extra-host <host>', 'extra DNS name or IP for the serving certificate (repeatable)', collect, [])
    .option(
      '--secret-namespace <ns>',
      'namespace whose JuiceFS Secrets may be read (repeatable; default: --namespace)',
      collect,
      [],
    )
    .option(
      '--no-require-secret-copy-seal',
      "admit pods before the controller has sealed the PVC's Secret copy (unsafe: ADR 0010; tests without a controller)",
    )
    .addOption(new Option('--mount-image <image>', 'default JuiceFS mount image').env('JFS_MOUNT_IMAGE'))
    .option(
      '--client-ca-file <file>',
      'answer admission requests only with a client certificate this CA signed (the API server admission kubeconfig)',
    )
    .option('--client-name <cn>', 'accepted client certificate CN with --client-ca-file (repeatable)', collect, [])
    .addOption(credentialsOptions()[0])
    .addOption(credentialsOptions()[1])
    .addOption(credentialsOptions()[2])
    .addOption(credentialsOptions()[3])
    .addOption(
      new Option('--on-error <policy>', 'what to do with a pod the webhook fails to process')
        .choices(['deny', 'allow'])
        .default('deny'),
    )
    .addOption(new Option('--log-level <level>', 'log level').env('LOG_LEVEL').default('info'))
    .action(async (o: WebhookFlags) => {
      const { runWebhook } = await import('../webhook/run.js');
      const log = pino({ level: o.logLevel, base: { component: 'webhook' } });
      const running = await runWebhook({
        kubeconfig: o.kubeconfig,
        host: o.host,
        port: o.port,
        namespace: o.namespace,
        serviceName: o.serviceName,
        webhookConfigName: o.webhookConfigName,
        validatingWebhookConfigName: o.validatingWebhookConfigName,
        ...(o.validateSecretStatus && { validateSecretStatus: { juicefsBinary: o.juicefs } }),
        certSecretName: o.certSecretName,
        certDir: o.certDir,
        extraHosts: o.extraHost,
        secretNamespaces: o.secretNamespace,
        requireSecretCopySeal: o.requireSecretCopySeal,
        mountImage: o.mountImage,
        defaultCredentials: o.credentials,
        // Without a CA file, the CA the controller publishes (broker-mode volumes are denied until it is there).
        broker: { url: o.credentialsUrl, image: o.credentialsImage, caFile: o.credentialsCaFile },
        clientCaFile: o.clientCaFile,
        clientNames: o.clientName,
        onError: o.onError,
        log,
      });
      closeOnSignal(() => running.close(), log, 'shutting down: draining requests in flight');
    });

  program
    .command('inject')
    .description('inject sidecars into pods and pod templates of YAML files, offline (like istioctl kube-inject)')
    .option(
      '-f, --filename <file>',
      'multi-document YAML with the workloads and the PVCs, PVs, StorageClasses and Secrets they use; - for stdin (repeatable)',
      collect,
      [],
    )
    .option('--config <file>', 'global config.yaml (default: a juicefs-csi-driver-config ConfigMap among the inputs)')
    .option('--serverless', 'serverless mode: emptyDir instead of hostPath', false)
    .addOption(new Option('--mount-image <image>', 'default JuiceFS mount image').env('JFS_MOUNT_IMAGE'))
    .addOption(credentialsOptions()[1])
    .addOption(credentialsOptions()[2])
    .addOption(credentialsOptions()[3])
    .action(async (o: InjectFlags) => {
      const { injectCommand } = await import('./inject-command.js');
      process.exitCode = injectCommand(
        {
          files: o.filename,
          config: o.config,
          serverless: o.serverless,
          mountImage: o.mountImage,
          broker: brokerClientFlags(o),
          projectImage: o.credentialsImage,
        },
        {
          readStdin: () => readFileSync(0, 'utf8'),
          stdout: (s) => process.stdout.write(s),
          stderr: (s) => process.stderr.write(s),
        },
      );
    });

  program
    .command('check')
    .description(
      "migration check: how a JuiceFS CSI Driver user's ConfigMap, StorageClasses, PVs, PVCs and Secrets are read here, per field (exit 1 when something is refused)",
    )
    .option('-f, --filename <file>', 'multi-document YAML; - for stdin (repeatable)', collect, [])
    .option('--kubeconfig <file>', 'read the objects from that cluster (a left-behind juicefs-admission-webhook too)')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'))
    .action(async (o: { filename: string[]; kubeconfig?: string; output: 'table' | 'json' }) => {
      const { checkCommand } = await import('./check-command.js');
      process.exitCode = await checkCommand(
        { files: o.filename, kubeconfig: o.kubeconfig, output: o.output },
        {
          readStdin: () => readFileSync(0, 'utf8'),
          stdout: (s) => process.stdout.write(s),
          stderr: (s) => process.stderr.write(s),
        },
      );
    });

  program
    .command('controller')
    .description('run the CSI controller (Identity + Controller services) on a Unix socket')
    .requiredOption('--endpoint <endpoint>', 'CSI endpoint, e.g. unix:///csi/csi.sock')
    .addOption(new Option('--juicefs <path>', 'the juicefs client binary').env('JFS_BINARY').default('juicefs'))
    .option('--state-dir <dir>', 'where temporary mounts and their logs live', '/var/lib/jfs-sidecar/controller')
    .option(
      '--kubeconfig <file>',
      'kubeconfig (default: in-cluster when there); needed for --secret-sync and label-based pathPatterns',
    )
    .option('--secret-sync', 'keep per-PVC copies of volume Secrets for sidecar mode', false)
    .option('--secret-namespace <ns>', 'namespace whose JuiceFS Secrets are copied from (repeatable)', collect, [])
    .option('--leader-elect', 'elect one active Secret-copy reconciler among replicas through a Lease', false)
    .option(
      '--upgrades',
      'reconcile JuiceFSUpgrade objects (leader only) and set the upgrade readiness gate of new pods (ADR 0017)',
      false,
    )
    .option(
      '--stop-classic-sidecars',
      "stop classic-placement sidecars (enableNativeSidecar: false) once their Job-like pod's apps are done",
      false,
    )
    .addOption(
      new Option('--leader-election-namespace <ns>', 'namespace of the Lease (and of Mount Pods with --node-id)')
        .env('POD_NAMESPACE')
        .default(SYSTEM_NAMESPACE),
    )
    .option(
      '--node-id <name>',
      'also serve the CSI Node service for this node on the same socket (Mount Pod mode with --kubeconfig)',
    )
    .addOption(
      new Option(
        '--mount-image <image>',
        "default JuiceFS mount image (the node service's with --node-id; upgrades' target.fromSettings)",
      ).env('JFS_MOUNT_IMAGE'),
    )
    .addOption(checkIntervalOption())
    .addOption(credentialsOptions()[0])
    .addOption(credentialsOptions()[1])
    .addOption(credentialsOptions()[2])
    .addOption(credentialsOptions()[3])
    .option('--credentials-broker', 'serve the credential broker (HTTPS) for volumes in broker mode', false)
    .option('--credentials-host <addr>', "the broker's listen address", '0.0.0.0')
    .option('--credentials-port <n>', "the broker's listen port", (v) => Number.parseInt(v, 10), 8444)
    .option(
      '--credentials-cert-dir <dir>',
      "tls.crt and tls.key of the broker's serving certificate (default: self-managed in a Secret)",
    )
    .option(
      '--credentials-cert-secret-name <name>',
      "Secret holding the broker's self-managed CA and certificate",
      CREDENTIALS_CERT_SECRET_NAME,
    )
    .option(
      '--credentials-service-name <name>',
      "the broker's Service (the self-managed certificate's DNS names)",
      CREDENTIALS_SERVICE_NAME,
    )
    .option(
      '--credentials-extra-host <host>',
      "extra DNS name or IP for the broker's self-managed certificate (repeatable)",
      collect,
      [],
    )
    .option('--metrics-address <host:port>', 'serve /metrics (Prometheus), /healthz and /readyz there')
    .addOption(new Option('--log-level <level>', 'log level').env('LOG_LEVEL').default('info'))
    .action(async (o: ControllerFlags) => {
      const { runController } = await import('../controller/run.js');
      const log = pino({ level: o.logLevel, base: { component: 'controller' } });
      const running = await runController({
        endpoint: o.endpoint,
        juicefsBinary: o.juicefs,
        stateDir: o.stateDir,
        kubeconfig: o.kubeconfig,
        secretSync: o.secretSync,
        secretNamespaces: o.secretNamespace.length ? o.secretNamespace : [o.leaderElectionNamespace],
        leaderElect: o.leaderElect,
        upgrades: o.upgrades,
        mountImage: o.mountImage,
        metricsAddress: o.metricsAddress,
        stopClassicSidecars: o.stopClassicSidecars,
        leaderElectionNamespace: o.leaderElectionNamespace,
        node: o.nodeId ? { nodeId: o.nodeId, mountImage: o.mountImage, checkIntervalMs: o.checkInterval } : undefined,
        defaultCredentials: o.credentials,
        broker: o.credentialsBroker ? controllerBroker(o) : undefined,
        log,
      });
      closeOnSignal(() => running.close(), log);
    });

  program
    .command('credentials')
    .description('credential broker client (ADR 0010)')
    .command('fetch')
    .description("fetch a volume's credentials from the broker with the pod's projected token (broker-mode init step)")
    .requiredOption('--url <url>', "the broker's URL")
    .requiredOption('--pvc <name>', 'the PersistentVolumeClaim whose volume credentials to fetch')
    .option('--volume <name>', 'the pod volume of that PVC (for messages)')
    .requiredOption('--token-file <file>', 'the projected ServiceAccount token (audience juicefs.com/credentials)')
    .requiredOption('--out <dir>', 'the memory-backed folder to write one file per credential into')
    .action(async (o: { url: string; pvc: string; volume?: string; tokenFile: string; out: string }) => {
      const { fetchCredentials } = await import('./credentials-fetch.js');
      await fetchCredentials({ ...o, log: (line) => process.stderr.write(`${line}\n`) });
    });

  program
    .command('node')
    .description('run the CSI node service (Identity + Node) on a Unix socket')
    .requiredOption('--endpoint <endpoint>', 'CSI endpoint, e.g. unix:///csi/csi.sock')
    .addOption(new Option('--node-id <name>', "this node's name").env('NODE_NAME').makeOptionMandatory())
    .option('--kubeconfig <file>', 'kubeconfig for Mount Pod mode (default: in-cluster when there)')
    .addOption(
      new Option('--namespace <ns>', 'namespace of Mount Pods, their Secrets and the global ConfigMap')
        .env('POD_NAMESPACE')
        .default(SYSTEM_NAMESPACE),
    )
    .addOption(new Option('--mount-image <image>', 'default JuiceFS mount image').env('JFS_MOUNT_IMAGE'))
    .addOption(checkIntervalOption())
    .option(
      '--registration-dir <dir>',
      "register with the kubelet through its plugin-registration API: the kubelet's plugins_registry folder as " +
        'this process sees it (default: off, e.g. when node-driver-registrar runs beside it)',
    )
    .option(
      '--kubelet-plugin-endpoint <path>',
      'with --registration-dir: the CSI socket (--endpoint) as the kubelet sees it, a path on the host',
      DEFAULT_KUBELET_PLUGIN_ENDPOINT,
    )
    .option(
      '--health-address <host:port>',
      "serve /healthz, /readyz (with the global ConfigMap's version and what of it is not applied) and /metrics there",
    )
    .addOption(new Option('--log-level <level>', 'log level').env('LOG_LEVEL').default('info'))
    .action(async (o: NodeFlags) => {
      const { runNode } = await import('../node/run.js');
      const log = pino({ level: o.logLevel, base: { component: 'node' } });
      const server = await runNode({
        endpoint: o.endpoint,
        nodeId: o.nodeId,
        kubeconfig: o.kubeconfig,
        namespace: o.namespace,
        mountImage: o.mountImage,
        checkIntervalMs: o.checkInterval,
        registration: o.registrationDir
          ? { dir: o.registrationDir, kubeletEndpoint: o.kubeletPluginEndpoint }
          : undefined,
        healthAddress: o.healthAddress,
        log,
      });
      closeOnSignal(() => server.close(), log);
    });

  program
    .command('dashboard')
    .description("serve the dashboard (read-only by default; writes act with the user's own bearer token, ADR 0023)")
    .option('--kubeconfig <file>', 'kubeconfig (default: in-cluster or $KUBECONFIG)')
    .option('--host <addr>', 'listen address', '0.0.0.0')
    .option('--port <n>', 'listen port', (v) => Number.parseInt(v, 10), 8080)
    .addOption(
      new Option('--namespace <ns>', 'namespace of the global ConfigMap and the Mount Pods')
        .env('POD_NAMESPACE')
        .default(SYSTEM_NAMESPACE),
    )
    .option(
      '--allow-writes',
      "offer the write actions (upgrades, the ConfigMap editor); each acts with the user's own token",
      false,
    )
    .addOption(new Option('--log-level <level>', 'log level').env('LOG_LEVEL').default('info'))
    .action(
      async (
        o: LogFlags & { kubeconfig?: string; host: string; port: number; namespace: string; allowWrites: boolean },
      ) => {
        // Loaded on demand: no other process loads the dashboard.
        const { runDashboard } = await import('../dashboard/run.js');
        const log = pino({ level: o.logLevel, base: { component: 'dashboard' } });
        const running = await runDashboard({ ...o, log });
        closeOnSignal(() => running.close(), log);
      },
    );

  program
    .command('local')
    .description(
      'run a throwaway local control plane with the webhook registered (npm start); never touches your cluster',
    )
    .addOption(new Option('--log-level <level>', 'log level').env('LOG_LEVEL').default('info'))
    .action(async (o: LogFlags) => {
      const { startLocalCluster, tryThisHint } = await loadHarness();
      const log = pino({ level: o.logLevel, base: { component: 'local' } }, pino.destination({ dest: 2, sync: true }));
      const cluster = await startLocalCluster(log);
      process.stdout.write(`${tryThisHint(cluster.kubeconfig)}\n`);
      closeOnSignal(() => cluster.stop(), log, 'stopping the local cluster');
    });

  return program;
}

Object.assign(process.env, aliasedEnv(process.env));
buildCli()
  .parseAsync(process.argv)
  .catch((err) => {
    process.stderr.write(
      `error: ${err instanceof HarnessMissing ? err.message : ((err as Error).stack ?? String(err))}\n`,
    );
    process.exit(1);
  });
