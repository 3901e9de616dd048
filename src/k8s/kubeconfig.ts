// Where a component's API credentials come from: --kubeconfig, else the
// in-cluster ServiceAccount.
import { KubeConfig } from '@kubernetes/client-node';

/** Credentials for a component that cannot work without the API ($KUBECONFIG and ~/.kube/config also count). */
export function loadKubeConfig(file?: string): KubeConfig {
  const kc = new KubeConfig();
  if (file) kc.loadFromFile(file);
  else kc.loadFromDefault();
  return kc;
}

/** Credentials for a component whose API use is optional: only a given file, or running in a cluster. */
export function kubeConfigIfAvailable(file?: string): KubeConfig | undefined {
  if (file) return loadKubeConfig(file);
  if (!process.env.KUBERNETES_SERVICE_HOST) return undefined;
  const kc = new KubeConfig();
  kc.loadFromCluster();
  return kc;
}
