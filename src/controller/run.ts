// The controller process: CSI Identity + Controller on a Unix socket.
import { CoreV1Api, type V1ConfigMap, type V1PersistentVolume } from '@kubernetes/client-node';
import { ConfigError, parseGlobalConfig, type GlobalConfig } from '../config/schema.js';
import { ResilientInformer } from '../k8s/informer.js';
import { leanPv } from '../k8s/lean-objects.js';
import { kubeConfigIfAvailable } from '../k8s/kubeconfig.js';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { LeaderElector } from '../k8s/leader.js';
import { unlessNotFound } from '../k8s/errors.js';
import { SecretSync } from './secret-sync.js';
import { UpgradeGateKeeper } from './upgrade-gate.js';
import { UpgradeReconciler } from './upgrade-reconciler.js';
import { MountPodBinaryActuator, MountPodRecreateActuator } from './upgrade-mount-pod.js';
import { SidecarActuator } from './upgrade-sidecar.js';
import { identityService } from '../csi/identity-service.js';
import { CsiMetrics } from '../csi/metrics.js';
import { startCsiServer, type CsiServer } from '../csi/server.js';
import { startHealthServer } from '../util/health-server.js';
import { JuicefsCli } from '../juicefs/cli.js';
import { JuicefsVolumes } from '../juicefs/volume.js';
import { startNodeService, type NodeServiceOptions } from '../node/run.js';
import { PACKAGE_VERSION } from '../util/package-root.js';
import { controllerService } from './controller-service.js';
import type { CredentialsMode } from '../contract/attributes.js';
import { serviceHosts } from '../certs/generate.js';
import { CONFIG_MAP_KEY, CONFIG_MAP_NAME, CREDENTIALS_CA_CONFIGMAP_NAME } from '../contract/keys.js';
import { startCredentialsBroker, type CredentialsBroker, type CredentialsBrokerOptions } from './credentials-broker.js';
import { ClassicStopper } from './classic-stopper.js';
import { ClusterCache } from '../k8s/cluster-cache.js';
import type { SettingsSource } from '../upgrade/settings-images.js';

export interface ControllerRunOptions {
  endpoint: string;
  juicefsBinary: string;
  stateDir: string;
  kubeconfig?: string;
  /** Keep per-PVC Secret copies for sidecar mode (needs a Kubernetes API). */
  secretSync: boolean;
  secretNamespaces: string[];
  leaderElect: boolean;
  /** Stop classic-placement sidecars once their pod's apps are done (ADR 0013; the leader only, with leaderElect). */
  stopClassicSidecars?: boolean;
  leaderElectionNamespace: string;
  /** A volume's credentials mode when its PV / StorageClass sets none (ADR 0010). */
  defaultCredentials: CredentialsMode;
  /** Serve the credential broker (ADR 0010) on HTTPS; its settings must match the webhook's. */
  broker?: Omit<
    CredentialsBrokerOptions,
    'kubeConfig' | 'secretNamespaces' | 'configNamespace' | 'defaultCredentials' | 'log' | 'selfManaged'
  > & {
    /** Without certDir: the self-managed certificate's Secret (in leaderElectionNamespace) and Service names. */
    selfManaged?: { secretName: string; serviceName: string; extraHosts: string[] };
  };
  /**
   * Reconcile JuiceFSUpgrade objects (leader only) and give injected pods their upgrade readiness gate's
   * first value (every replica; ADR 0017).
   */
  upgrades?: boolean;
  /** The deployment's default mount image, as the node service has it: `target.fromSettings` of Mount Pods. */
  mountImage?: string;
  /** host:port of /healthz, /readyz and /metrics (Prometheus); unset: none. */
  metricsAddress?: string;
  /** Also serve the Node service for this node on the same socket (Mount Pods in leaderElectionNamespace). */
  node?: Omit<NodeServiceOptions, 'kubeconfig' | 'namespace' | 'log'>;
  log: Logger;
}

export async function runController(
  opts: ControllerRunOptions,
): Promise<{ server: CsiServer; metricsPort?: number; close(): Promise<void> }> {
  const volumes = new JuicefsVolumes(new JuicefsCli(opts.juicefsBinary, opts.log), opts.stateDir, opts.log);
  await volumes.cleanupStale();
  const kc = kubeConfigIfAvailable(opts.kubeconfig);
  const core = kc?.makeApiClient(CoreV1Api);
  const getPvc = core
    ? async (namespace: string, name: string) =>
        unlessNotFound(core.readNamespacedPersistentVolumeClaim({ namespace, name }))
    : undefined;
  const getNode = core ? async (name: string) => unlessNotFound(core.readNode({ name })) : undefined;
  // One PV read per DeleteVolume or expansion of a volume with no record (its capacity is not in the lean cache).
  const getPv = core ? async (name: string) => unlessNotFound(core.readPersistentVolume({ name })) : undefined;
  // Every DeleteVolume asks which other PVs mount its directory: a lean PV cache, not a LIST per call.
  const pvCache =
    kc && core
      ? new ResilientInformer<V1PersistentVolume>({
          kubeConfig: kc,
          path: '/api/v1/persistentvolumes',
          list: () => core.listPersistentVolume(),
          listPage: (page) => core.listPersistentVolume(page),
          transform: leanPv,
          log: opts.log.child({ part: 'pv-cache' }),
        })
      : undefined;
  void pvCache?.start();
  // The quota switches of the global ConfigMap: from the cluster cache when one runs (below), else a watch of that
  // one object (the last config that parsed stays in force).
  let quotaConfig = { enableSetQuota: true, enableControllerSetQuota: true };
  let clusterConfig: (() => GlobalConfig) | undefined;
  const fieldSelector = `metadata.name=${CONFIG_MAP_NAME}`;
  const configNamespace = opts.leaderElectionNamespace;
  const configWatch =
    kc && core && !(opts.upgrades || opts.broker)
      ? new ResilientInformer<V1ConfigMap>({
          kubeConfig: kc,
          path: `/api/v1/namespaces/${configNamespace}/configmaps`,
          list: () => core.listNamespacedConfigMap({ namespace: configNamespace, fieldSelector }),
          fieldSelector,
          log: opts.log.child({ part: 'config' }),
        })
      : undefined;
  const reloadQuotaConfig = () => {
    try {
      quotaConfig = parseGlobalConfig(configWatch?.get(CONFIG_MAP_NAME, configNamespace)?.data?.[CONFIG_MAP_KEY]);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      opts.log.warn({ err: err.message }, 'global ConfigMap refused; the last good quota switches stay');
    }
  };
  for (const verb of ['add', 'update', 'delete'] as const) configWatch?.on(verb, reloadQuotaConfig);
  void configWatch?.start();
  const listPvs =
    pvCache && core
      ? async () => (pvCache.synced ? [...pvCache.list()] : (await core.listPersistentVolume()).items)
      : undefined;
  const metrics = new CsiMetrics({ role: opts.node ? 'both' : 'controller' });
  const node = opts.node
    ? await startNodeService({
        ...opts.node,
        kubeconfig: opts.kubeconfig,
        namespace: opts.leaderElectionNamespace,
        metrics,
        log: opts.log,
      })
    : undefined;
  const server = await startCsiServer(
    opts.endpoint,
    {
      Identity: identityService(PACKAGE_VERSION, true),
      Controller: controllerService({
        volumes,
        version: PACKAGE_VERSION,
        log: opts.log,
        getPvc,
        getNode,
        getPv,
        listPvs,
        config: () => clusterConfig?.() ?? quotaConfig,
      }),
      ...(node ? { Node: node.service } : {}),
    },
    opts.log,
    metrics,
  );
  let sync: SecretSync | undefined;
  let stopper: ClassicStopper | undefined;
  let elector: LeaderElector | undefined;
  let upgrades: UpgradeReconciler | undefined;
  let clusterView: ClusterCache | undefined;
  let gates: UpgradeGateKeeper | undefined;
  // What one replica does at a time (the leader's, with leaderElect).
  const leaderWork: { what: string; start(): Promise<void> }[] = [];
  if (opts.secretSync) {
    if (!kc) throw new Error('--secret-sync needs a Kubernetes API: give --kubeconfig or run in a cluster');
    const s = (sync = new SecretSync({
      kubeConfig: kc,
      secretNamespaces: opts.secretNamespaces,
      defaultCredentials: opts.defaultCredentials,
      log: opts.log.child({ part: 'secret-sync' }),
    }));
    leaderWork.push({ what: 'secret sync', start: () => s.start() });
  }
  if (opts.stopClassicSidecars) {
    if (!kc) throw new Error('--stop-classic-sidecars needs a Kubernetes API: give --kubeconfig or run in a cluster');
    const s = (stopper = new ClassicStopper({ kubeConfig: kc, log: opts.log.child({ part: 'classic-stopper' }) }));
    leaderWork.push({ what: 'classic sidecar stopper', start: () => s.start() });
  }
  // One cluster cache for the parts that read volumes and the ConfigMap (the broker's decisions, the upgrades'
  // `target.fromSettings`), started before either.
  const view =
    kc && (opts.upgrades || opts.broker)
      ? (clusterView = new ClusterCache({
          kubeConfig: kc,
          secretNamespaces: opts.broker ? opts.secretNamespaces : [],
          configNamespace: opts.leaderElectionNamespace,
          requireSecretCopySeal: false,
          defaultCredentials: opts.defaultCredentials,
          log: opts.log.child({ part: 'cluster-cache' }),
        }))
      : undefined;
  await view?.start();
  if (view) clusterConfig = () => view.globalConfig;
  if (opts.upgrades) {
    if (!kc || !view) throw new Error('--upgrades needs a Kubernetes API: give --kubeconfig or run in a cluster');
    const log = opts.log.child({ part: 'upgrades' });
    const settings: SettingsSource = {
      pvs: () => view.pvs(),
      getPvc: (namespace, name) => view.getPvc(namespace, name),
      get config() {
        return view.globalConfig;
      },
      defaultMountImage: opts.mountImage ?? opts.node?.mountImage,
    };
    const u = (upgrades = new UpgradeReconciler({
      kubeConfig: kc,
      actuators: [
        new SidecarActuator({ kubeConfig: kc, log }),
        new MountPodBinaryActuator({ kubeConfig: kc, log, settings }),
        new MountPodRecreateActuator({ kubeConfig: kc, log, settings }),
      ],
      log,
      outcomes: metrics.counter('jfs_sidecar_upgrade_pods_total', 'Pods whose upgrade ended, by kind and result', [
        'kind',
        'result',
      ]),
    }));
    leaderWork.push({ what: 'upgrade reconciler', start: () => u.start() });
    // Not behind the lease: new pods must not wait for a leader to become Ready.
    gates = new UpgradeGateKeeper({ kubeConfig: kc, log });
    void gates.start().catch((err) => log.error({ err: (err as Error).message }, 'gate keeper failed to start'));
  }
  if (kc && leaderWork.length > 0) {
    const startLeaderWork = () => {
      for (const w of leaderWork)
        void w.start().catch((err) => opts.log.error({ err: (err as Error).message }, `${w.what} failed to start`));
    };
    if (opts.leaderElect) {
      elector = new LeaderElector({
        kubeConfig: kc,
        namespace: opts.leaderElectionNamespace,
        name: 'jfs-sidecar-controller',
        identity: `${hostname()}-${process.pid}`,
        log: opts.log,
      });
      // Losing the lease ends the process, so a restarted one starts clean (as client-go controllers do).
      void elector.run(startLeaderWork, () => process.exit(1));
    } else startLeaderWork();
  }
  // Every replica answers (no leader): it only reads, and the sidecars of starting pods depend on it.
  let broker: CredentialsBroker | undefined;
  if (opts.broker) {
    if (!kc) throw new Error('--credentials-broker needs a Kubernetes API: give --kubeconfig or run in a cluster');
    const self = opts.broker.selfManaged;
    const namespace = opts.leaderElectionNamespace;
    broker = await startCredentialsBroker({
      ...opts.broker,
      selfManaged: self && {
        namespace,
        secretName: self.secretName,
        caConfigMapName: CREDENTIALS_CA_CONFIGMAP_NAME,
        hosts: serviceHosts(self.serviceName, namespace, self.extraHosts),
      },
      kubeConfig: kc,
      secretNamespaces: opts.secretNamespaces,
      configNamespace: opts.leaderElectionNamespace,
      defaultCredentials: opts.defaultCredentials,
      view,
      log: opts.log.child({ part: 'credential-broker' }),
    });
  }
  const health = opts.metricsAddress
    ? await startHealthServer(opts.metricsAddress, { metrics: () => metrics.render() }, '--metrics-address')
    : undefined;
  return {
    server,
    ...(health && { metricsPort: health.port }),
    close: async () => {
      await health?.close();
      await broker?.close();
      elector?.stop();
      await sync?.stop();
      await upgrades?.stop();
      await clusterView?.stop();
      await pvCache?.stop();
      await configWatch?.stop();
      await gates?.stop();
      await stopper?.stop();
      await server.close();
      await node?.close();
      await volumes.close();
    },
  };
}
