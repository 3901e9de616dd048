// The two ways a namespace asks for injection (the labels in keys.ts): a hostPath-shared
// mount (`sidecar`), or an emptyDir one for serverless nodes (`serverless`).
export type InjectMode = 'sidecar' | 'serverless';
