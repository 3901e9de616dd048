export { injectPod, skipBeforeResolving, describePod } from './inject.js';
export { computeMountSettings, type MountSettings } from './settings.js';
export { DenyError, type DenyCode } from './errors.js';
export type * from './types.js';
