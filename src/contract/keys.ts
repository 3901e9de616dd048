// The compatibility contract with JuiceFS CSI Driver (DESIGN.md, "Compatibility
// contract"). Every label, annotation, attribute key, name and default that a
// user's existing objects may carry is defined here and imported elsewhere.

export const CSI_DRIVER_NAME = 'csi.juicefs.com';

/** Namespace labels that opt a namespace in. */
export const LABEL_ENABLE_INJECTION = 'juicefs.com/enable-injection';
export const LABEL_ENABLE_SERVERLESS_INJECTION = 'juicefs.com/enable-serverless-injection';

/** Pod labels. */
export const LABEL_DISABLE_INJECTION = 'disable.sidecar.juicefs.com/inject';
export const LABEL_INJECTION_DONE = 'done.sidecar.juicefs.com/inject';

/** Pod annotation kubectl reads to pick the container of exec, attach, logs and cp when none is named. */
export const ANNOTATION_DEFAULT_CONTAINER = 'kubectl.kubernetes.io/default-container';

/**
 * The readiness gate's condition type of the in-place upgrade (ADR 0017): False while the upgrader swaps the
 * pod's client, True otherwise (set by the controller).
 */
export const UPGRADE_GATE = 'jfs-sidecar.juicefs.com/client-ready';

/** Names the injector gives to what it adds. */
export const SIDECAR_NAME = 'jfs-mount';
export const FORMAT_INIT_NAME = 'jfs-format';
export const CACHE_VOLUME_PREFIX = 'jfs-cache';
/** Pod volumes of `juicefs/host-path` (not caches: the cache cleanup never touches them). */
export const HOST_PATH_VOLUME_PREFIX = 'jfs-host';
/** Env var (downward API) that makes per-pod host paths unique before the pod has a name or UID. */
export const POD_UID_ENV = 'JUICEFS_POD_UID';
export const MOUNT_POINT_ENV = 'JFS_MOUNT_POINT';
/** A sidecar's quota to set once mounted (src/mount/settings.ts `quota`): the directory and its size in GiB. */
export const QUOTA_PATH_ENV = 'JFS_QUOTA_PATH';
export const QUOTA_GIB_ENV = 'JFS_QUOTA_GIB';

/** Secret keys (PV nodePublishSecretRef or provisioner secrets). */
export const SECRET_KEYS = {
  name: 'name',
  metaurl: 'metaurl',
  storage: 'storage',
  bucket: 'bucket',
  accessKey: 'access-key',
  secretKey: 'secret-key',
  envs: 'envs',
  formatOptions: 'format-options',
  token: 'token',
} as const;

/**
 * Per-volume settings in PV volumeAttributes and StorageClass parameters; parsers, setters and scope in
 * ./attributes.ts.
 */
export const ATTR = {
  mountImage: 'juicefs/mount-image',
  cpuRequest: 'juicefs/mount-cpu-request',
  cpuLimit: 'juicefs/mount-cpu-limit',
  memoryRequest: 'juicefs/mount-memory-request',
  memoryLimit: 'juicefs/mount-memory-limit',
  deleteDelay: 'juicefs/mount-delete-delay',
  cleanCache: 'juicefs/clean-cache',
  mountLabels: 'juicefs/mount-labels',
  mountAnnotations: 'juicefs/mount-annotations',
  mountOptions: 'mountOptions',
  subPath: 'subPath',
  pathPattern: 'pathPattern',
  renderedMountOptions: 'juicefs/rendered-mount-options',
  controllerQuotaSet: 'juicefs/controller-quota-set',
  credentials: 'juicefs/credentials',
  fdHolder: 'juicefs/fd-holder',
  cachePvc: 'juicefs/mount-cache-pvc',
  cacheEmptyDir: 'juicefs/mount-cache-emptydir',
  cacheInlineVolume: 'juicefs/mount-cache-inline-volume',
  hostPath: 'juicefs/host-path',
  mountServiceAccount: 'juicefs/mount-service-account',
} as const;

/** Prefix of keys that belong to JuiceFS; user annotations with it are checked against the allow-list. */
export const JUICEFS_KEY_PREFIX = 'juicefs';

/** Default sidecar / Mount Pod resources. */
export const DEFAULT_RESOURCES = {
  requests: { cpu: '1', memory: '1Gi' },
  limits: { cpu: '2', memory: '5Gi' },
} as const;

export const DEFAULT_CE_MOUNT_IMAGE = 'juicedata/mount:ce-v1.3.1';
export const DEFAULT_EE_MOUNT_IMAGE = 'juicedata/mount:ee-5.2.9';

/** Host paths. */
export const MOUNT_ROOT = '/var/lib/juicefs/volume';
/** The node service's CSI socket as a kubelet at the default root (/var/lib/kubelet) sees it. */
export const DEFAULT_KUBELET_PLUGIN_ENDPOINT = `/var/lib/kubelet/plugins/${CSI_DRIVER_NAME}/csi.sock`;
export const DEFAULT_CACHE_DIR = '/var/jfsCache';
/**
 * Where the client sees its cache volumes that are no host folder, as the reference driver names them: the i-th cache
 * PVC `/var/jfsCache-<i>`, the emptyDir `/var/jfsCache-emptyDir`, the i-th inline CSI volume
 * `/var/jfsCache-inlineVolume-<i>`, the i-th generic ephemeral volume `/var/jfsCache-ephemeral-<i>`.
 */
export const CACHE_MOUNT_PATHS = {
  pvc: (i: number) => `${DEFAULT_CACHE_DIR}-${i}`,
  emptyDir: `${DEFAULT_CACHE_DIR}-emptyDir`,
  inline: (i: number) => `${DEFAULT_CACHE_DIR}-inlineVolume-${i}`,
  ephemeral: (i: number) => `${DEFAULT_CACHE_DIR}-ephemeral-${i}`,
} as const;
/**
 * The node service's FUSE fd holders (Mount Pod mode): one folder per Mount Pod, mounted at /tmp in it, holding the
 * holder's socket, the client's own fd socket (`fuse_fd_comm.<pid>`, found again after a node service restart) and
 * its handle state file. Not a compatibility name: the reference uses /var/run/juicefs-csi.
 */
export const FD_HOLDER_ROOT = '/var/run/jfs-sidecar/fd';

export const METRICS_PORT = 9567;
/** The client's metrics port name in every sidecar and Mount Pod. */
export const METRICS_PORT_NAME = 'metrics';

/** Namespace of the controller, the node service, the webhook, Mount Pods, their Secrets and the global ConfigMap. */
export const SYSTEM_NAMESPACE = 'juicefs-system';

/** Global config ConfigMap. */
export const CONFIG_MAP_NAME = 'juicefs-csi-driver-config';
export const CONFIG_MAP_KEY = 'config.yaml';

/** Mount Pod labels and annotations (node fallback). */
export const MOUNT_POD_LABEL_APP = 'app.kubernetes.io/name';
export const MOUNT_POD_APP_VALUE = 'juicefs-mount';
export const MOUNT_POD_LABEL_VOLUME_ID = 'volume-id';
export const MOUNT_POD_LABEL_HASH = 'juicefs-hash';
export const MOUNT_POD_ANN_DELETE_DELAY = 'juicefs-delete-delay';
export const MOUNT_POD_ANN_DELETE_AT = 'juicefs-delete-at';
/**
 * "true" while the node service holds the Mount Pod client's FUSE fd (its check pass keeps it current): a recreate
 * upgrade hands over only then, else the client's restart would end the mount (ADR 0019).
 */
export const MOUNT_POD_ANN_FD_HELD = 'juicefs-fd-held';
export const MOUNT_POD_REF_PREFIX = 'juicefs-';
/** Set on a Mount Pod whose volume has `juicefs/clean-cache: "true"`: its cache is removed after it is gone. */
export const MOUNT_POD_ANN_CLEAN_CACHE = 'juicefs-clean-cache';
/** `app.kubernetes.io/name` of cache-cleanup Jobs and their pods. */
export const CLEAN_CACHE_APP_VALUE = 'juicefs-clean-cache';

/** StorageClass parameter keys the external-provisioner consumes (secrets of the class). */
export const SC_SECRET_PARAMS = {
  provisionerName: 'csi.storage.k8s.io/provisioner-secret-name',
  provisionerNamespace: 'csi.storage.k8s.io/provisioner-secret-namespace',
  nodePublishName: 'csi.storage.k8s.io/node-publish-secret-name',
  nodePublishNamespace: 'csi.storage.k8s.io/node-publish-secret-namespace',
} as const;

/** Per-PVC copy of the volume Secret kept by the controller in the PVC's namespace (sidecar mode). */
export const SECRET_COPY_LABEL = 'juicefs.com/secret-copy-of';
/**
 * On the PVC: the controller's seal over the copy it made (`<copy uid>.<HMAC keyed by the source Secret's uid>`).
 * The webhook admits a pod only when the seal verifies, so a copy the controller did not make is never referenced
 * (ADR 0010).
 */
export const SECRET_COPY_SEAL_ANNOTATION = 'juicefs.com/secret-copy-seal';
/** The webhook's self-managed certificate Secret (default of --cert-secret-name): never a volume's Secret. */
export const WEBHOOK_CERT_SECRET_NAME = 'jfs-sidecar-webhook-certs';
export const SECRET_COPY_ENV_PREFIX = 'envs.';
/** Keys of a normalised Secret (and its copy) that hold one `juicefs format` flag's value each. */
export const FORMAT_FLAG_KEY_PREFIX = 'format.';

/**
 * Credential broker (ADR 0010, `juicefs/credentials: broker`): the sidecar fetches its volume's credentials from the
 * controller at start, with a projected ServiceAccount token of this audience, into a memory-backed emptyDir.
 */
export const CREDENTIALS_AUDIENCE = 'juicefs.com/credentials';
/** The init container that fetches them (`jfs-credentials`, `jfs-credentials-<i>`), from the jfs-sidecar image. */
export const CREDENTIALS_INIT_NAME = 'jfs-credentials';
/** The per-volume memory-backed emptyDir the credentials are written to (`jfs-credentials-<i>`). */
export const CREDENTIALS_VOLUME_PREFIX = 'jfs-credentials';
/** The projected token volume, mounted only by the fetch containers. */
export const CREDENTIALS_TOKEN_VOLUME = 'jfs-credentials-token';
/** Env var of the mount and format containers: where the credential files are (one file per env var). */
export const CREDENTIALS_DIR_ENV = 'JFS_CREDENTIALS_DIR';
/** Env var of the fetch container: the PEM of the CA that signs the broker's serving certificate. */
export const CREDENTIALS_CA_ENV = 'JFS_CREDENTIALS_CA';
/** Default broker URL: the controller's Service in the system namespace. */
export const DEFAULT_CREDENTIALS_URL = `https://jfs-sidecar-credentials.${SYSTEM_NAMESPACE}.svc:8444`;
/** The broker's Service (default of the controller's --credentials-service-name): its serving certificate's names. */
export const CREDENTIALS_SERVICE_NAME = 'jfs-sidecar-credentials';
/** The controller's self-managed CA and serving certificate of the broker: never a volume's Secret. */
export const CREDENTIALS_CERT_SECRET_NAME = 'jfs-sidecar-credentials-tls';
/** The ConfigMap the controller publishes the broker's CA bundle in (public), for the webhook to inject. */
export const CREDENTIALS_CA_CONFIGMAP_NAME = 'jfs-sidecar-credentials-ca';
/** Path of the broker's one endpoint. */
export const CREDENTIALS_PATH = '/v1/credentials';

// The FUSE fd holder of sidecar mode (issue 13; src/fdpass/, ADR 0016): a native sidecar from the jfs-sidecar image,
// before the jfs-mount containers, keeping each client's /dev/fuse fd on a memory-backed emptyDir they share.
export const FD_HOLDER_NAME = 'jfs-fd-holder';
/** The shared emptyDir (medium Memory) and where the holder and each jfs-mount container mount it. */
export const FD_HOLDER_VOLUME = 'jfs-fd';
export const FD_HOLDER_DIR = '/jfs-fd';
/** One folder per client container, `<dir>/<container name>/`: the socket, the state file, the handover marker. */
export const FD_HOLDER_SOCKET_FILE = 'fuse.sock';
export const FD_HOLDER_STATE_FILE = 'state.json';
export const FD_HOLDER_HANDOVER_FILE = 'handover';
/** The client container's folder on that volume (its entrypoint script reads the marker and moves the state there). */
export const FD_DIR_ENV = 'JFS_FD_DIR';

/** The ValidatingWebhookConfiguration of JuiceFS Secrets and PVs (manifests/validating-webhook.yaml). */
export const VALIDATING_WEBHOOK_CONFIG_NAME = 'jfs-sidecar-validate';
/** The label that asks the validating webhook to check a Secret (the reference driver's). */
export const VALIDATE_SECRET_LABEL = 'juicefs.com/validate-secret';
