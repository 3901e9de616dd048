// Kubernetes' $(VAR) expansion of container env values, command and args, as
// kubelet performs it: $(NAME) is replaced when NAME is defined, $$ is a
// literal $, and anything else stays as written. The kubelet stand-in's: it
// runs Mount Pods' commands on this machine (the product leaves expansion to kubelet).
import type { V1Container, V1EnvVar, V1Pod, V1Secret } from '@kubernetes/client-node';

export function expand(text: string, vars: Record<string, string>): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c !== '$' || i === text.length - 1) {
      out += c;
      continue;
    }
    const next = text[i + 1];
    if (next === '$') {
      out += '$';
      i++;
    } else if (next === '(') {
      const close = text.indexOf(')', i + 2);
      if (close < 0) {
        out += text.slice(i);
        break;
      }
      const name = text.slice(i + 2, close);
      out += Object.prototype.hasOwnProperty.call(vars, name) ? vars[name] : text.slice(i, close + 1);
      i = close;
    } else out += c;
  }
  return out;
}

export class EnvError extends Error {
  override name = 'EnvError';
}

function fieldOf(pod: V1Pod, path: string): string {
  switch (path) {
    case 'metadata.name':
      return pod.metadata?.name ?? '';
    case 'metadata.namespace':
      return pod.metadata?.namespace ?? '';
    case 'metadata.uid':
      return pod.metadata?.uid ?? '';
    case 'spec.nodeName':
      return pod.spec?.nodeName ?? '';
    default:
      throw new EnvError(`fieldRef ${path} is not supported by the stand-in`);
  }
}

/** The environment of a container, in order, each value expanded against those before it. */
export function resolveEnv(
  pod: V1Pod,
  container: V1Container,
  getSecret: (name: string) => V1Secret | undefined,
): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const e of container.env ?? ([] as V1EnvVar[])) {
    if (e.value !== undefined) vars[e.name] = expand(e.value, vars);
    else if (e.valueFrom?.fieldRef) vars[e.name] = fieldOf(pod, e.valueFrom.fieldRef.fieldPath);
    else if (e.valueFrom?.secretKeyRef) {
      const ref = e.valueFrom.secretKeyRef;
      const data = getSecret(ref.name ?? '')?.data?.[ref.key];
      if (data === undefined) {
        if (ref.optional) continue;
        throw new EnvError(`Secret ${ref.name} key ${ref.key} not found (env ${e.name})`);
      }
      vars[e.name] = Buffer.from(data, 'base64').toString('utf8');
    } else if (e.valueFrom) throw new EnvError(`env ${e.name}: this valueFrom is not supported by the stand-in`);
    else vars[e.name] = '';
  }
  return vars;
}

/** command + args, expanded, as kubelet would exec them. */
export function commandLine(container: V1Container, env: Record<string, string>): string[] {
  return [...(container.command ?? []), ...(container.args ?? [])].map((a) => expand(a, env));
}
