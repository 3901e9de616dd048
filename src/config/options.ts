// How a run's inject options are derived from what an adapter has at hand.
import type { KubernetesObject, V1ConfigMap, V1Namespace } from '@kubernetes/client-node';
import {
  CONFIG_MAP_KEY,
  CONFIG_MAP_NAME,
  LABEL_ENABLE_INJECTION,
  LABEL_ENABLE_SERVERLESS_INJECTION,
} from '../contract/keys.js';
import type { InjectMode } from '../contract/inject-mode.js';
import { parseGlobalConfig, type GlobalConfig } from './schema.js';

/** The injection mode a namespace asks for, or undefined when it asks for none. Serverless wins when both are set. */
export function namespaceMode(ns: V1Namespace | undefined): InjectMode | undefined {
  const labels = ns?.metadata?.labels ?? {};
  if (labels[LABEL_ENABLE_SERVERLESS_INJECTION] === 'true') return 'serverless';
  if (labels[LABEL_ENABLE_INJECTION] === 'true') return 'sidecar';
  return undefined;
}

/** The global config from a juicefs-csi-driver-config ConfigMap among objects, else the defaults. */
export function configFromObjects(objects: KubernetesObject[]): GlobalConfig {
  const cm = objects.find((o): o is V1ConfigMap => o.kind === 'ConfigMap' && o.metadata?.name === CONFIG_MAP_NAME);
  return parseGlobalConfig(cm?.data?.[CONFIG_MAP_KEY]);
}
