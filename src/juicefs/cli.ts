// The real `juicefs` client, run as a child process: argv only (no shell), a
// time-out on every call, stderr captured into the error with credentials
// redacted.
import { spawn } from 'node:child_process';
import type { Logger } from 'pino';

export class JuicefsError extends Error {
  constructor(
    message: string,
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(message);
    this.name = 'JuicefsError';
  }
}

export interface RunOptions {
  timeoutMs?: number;
  env?: Record<string, string>;
}

/** Replaces every secret value (and the password part of URLs) with "****". */
export function redact(text: string, secrets: string[]): string {
  let out = text;
  for (const s of secrets) if (s && s.length >= 3) out = out.split(s).join('****');
  return out.replace(/(\/\/[^:/@\s]*:)[^@\s]*@/g, '$1****@');
}

export class JuicefsCli {
  constructor(
    readonly binary: string,
    private readonly log: Logger,
    private readonly defaultTimeoutMs = 60_000,
  ) {}

  /** Runs `juicefs ARGS`; `secrets` are redacted from logs and errors. */
  async run(args: string[], secrets: string[], opts: RunOptions = {}): Promise<{ stdout: string; stderr: string }> {
    const timeoutMs = opts.timeoutMs ?? this.defaultTimeoutMs;
    const shown = redact(args.join(' '), secrets);
    this.log.debug({ cmd: `juicefs ${shown}` }, 'running juicefs');
    return new Promise((resolve, reject) => {
      const child = spawn(this.binary, args, {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, ...(opts.env ?? {}) },
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
      }, timeoutMs);
      child.on('error', (err) => {
        clearTimeout(timer);
        reject(new JuicefsError(`juicefs ${shown}: ${err.message}`, null, ''));
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (code === 0) return resolve({ stdout, stderr });
        const tail = redact(stderr, secrets).trim().split('\n').slice(-5).join('\n');
        const why = signal === 'SIGKILL' ? `timed out after ${timeoutMs} ms` : `exit ${code}`;
        reject(new JuicefsError(`juicefs ${shown}: ${why}: ${tail}`, code, redact(stderr, secrets)));
      });
    });
  }
}
