// Kubernetes' $(VAR) expansion of container env values, command and args, as
// kubelet performs it: $(NAME) is replaced when NAME is defined, $$ is a
// literal $, and anything else stays as written. For tests that run a rendered
// container's command on this machine (the product leaves expansion to kubelet).
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
