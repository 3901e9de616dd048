// Typed denial reasons: the code labels the metric and the log line, the
// message tells the user which object is wrong and how.

export type DenyCode =
  | 'pvc-not-found'
  | 'pv-not-found'
  | 'pv-not-bound'
  | 'storage-class-not-found'
  | 'secret-not-found'
  | 'invalid-pvc'
  | 'invalid-pv'
  | 'invalid-storage-class'
  | 'invalid-secret'
  | 'secret-copy-not-ready'
  | 'invalid-config'
  | 'unsupported'
  | 'invalid-pod'
  | 'ephemeral-container'
  | 'credentials-shared-process'
  | 'credentials-volume-mount';

export class DenyError extends Error {
  constructor(
    readonly code: DenyCode,
    message: string,
  ) {
    super(message);
    this.name = 'DenyError';
  }
}
