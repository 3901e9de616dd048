// Which env vars a volume's Secret `envs` may give the JuiceFS client. The
// client runs privileged, so `envs` is an allow-list of what a JuiceFS client
// legitimately reads from its environment (object-storage and metadata
// credentials, regions, proxies, time zone, Go runtime tuning, the documented
// JFS_* client switches; from juicefs' own os.Getenv calls), never the
// injector's own variables (JFS_METAURL, JFS_MOUNT_POINT, JUICEFS_POD_UID, …),
// the loader's (LD_*), the shell's (PATH, BASH_ENV, ENV, IFS, PS4, SHELLOPTS)
// or any other runtime's (GCONV_PATH, NODE_OPTIONS, GODEBUG, …).

/** Exact names. */
const NAMES = new Set([
  'TZ',
  'HTTP_PROXY',
  'HTTPS_PROXY',
  'NO_PROXY',
  'http_proxy',
  'https_proxy',
  'no_proxy',
  'GOMAXPROCS',
  'GOGC',
  'GOMEMLIMIT',
  // object storage and metadata engine credentials
  'ACCESS_KEY',
  'SECRET_KEY',
  'SESSION_TOKEN',
  'SECURITY_TOKEN',
  'META_PASSWORD',
  'REDIS_PASSWORD',
  'SENTINEL_PASSWORD',
  'SENTINEL_PASSWORD_FOR_OBJ',
  'GOOGLE_CLOUD_PROJECT',
  'GOOGLE_APPLICATION_CREDENTIALS',
  'AZURE_STORAGE_CONNECTION_STRING',
  'HADOOP_USER_NAME',
  'HADOOP_SUPER_USER',
  'HADOOP_SUPER_GROUP',
  'KRB5PRINCIPAL',
  'KRB5KEYTAB_BASE64',
  'PYROSCOPE_AUTH_TOKEN',
  // JuiceFS client switches
  'JFS_RSA_PASSPHRASE',
  'JFS_S3_VHOST_STYLE',
  'JFS_NO_CHECK_OBJECT_STORAGE',
  'JFS_MAX_IO_DURATION',
  'JFS_MAX_IO_ERR_PERCENTAGE',
  'JFS_MAX_DURATION_TO_DOWN',
  'JFS_MAX_CONCURRENCY_FOR_UNSTABLE',
  'JFS_OBJECT_NO_ORDER',
  'JFS_NUM_GOOGLE_CLIENTS',
  'JFS_DROP_OSCACHE',
  'JFS_MOUNT_TIMEOUT',
]);

/** Prefixes of object-storage providers' own variables (AWS_ACCESS_KEY_ID, ALICLOUD_REGION_ID, …). */
const PREFIXES = [
  'AWS_',
  'ALICLOUD_',
  'ALIBABA_CLOUD_',
  'HWCLOUD_',
  'BDCLOUD_',
  'COS_',
  'EOS_',
  'MINIO_',
  'SCW_',
  'QINIU_',
  'OSS_',
];

/** Whether a Secret's `envs` may set this variable in the client. */
export function isClientEnvName(name: string): boolean {
  return NAMES.has(name) || PREFIXES.some((p) => name.startsWith(p) && /^[A-Z0-9_]+$/.test(name));
}

/** The allow-list in short, for messages (README "Secret `envs`" has it all). */
export function describeClientEnv(): string {
  return `object-storage credentials such as AWS_*, ACCESS_KEY, SECRET_KEY; META_PASSWORD; proxies; TZ; GOMAXPROCS; documented JFS_* switches such as JFS_RSA_PASSPHRASE; README "Secret envs" lists them`;
}

/** Every allowed name and prefix (README, tests). */
export const CLIENT_ENV_NAMES: readonly string[] = [...NAMES];
export const CLIENT_ENV_PREFIXES: readonly string[] = PREFIXES;
