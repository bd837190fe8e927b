import { fork } from 'node:child_process';

export interface ChildOptions {
  /** Run the child under `node --cpu-prof`, writing `<name>.cpuprofile` into this directory. */
  cpuProfDir?: string;
  cpuProfName?: string;
}

/**
 * Runs `modulePath` in a fresh Node process with `job` as its only argument
 * (JSON) and resolves with the one message it sends back. A fresh process per
 * measurement is what makes its peak RSS belong to that workload alone: the
 * parent's own heap and earlier runs' garbage never count.
 */
export function runChild<R>(modulePath: string, job: unknown, opts: ChildOptions = {}): Promise<R> {
  const execArgv = opts.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${opts.cpuProfDir}`, `--cpu-prof-name=${opts.cpuProfName ?? 'child'}.cpuprofile`] : [];
  return new Promise<R>((resolve, reject) => {
    const child = fork(modulePath, [JSON.stringify(job)], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let result: { ok: true; value: R } | { ok: false; error: string } | undefined;
    child.on('message', (m) => {
      result = m as typeof result;
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (result?.ok) resolve(result.value);
      else if (result) reject(new Error(`bench child failed: ${result.error}`));
      else reject(new Error(`bench child exited (${signal ?? `code ${code}`}) without a result`));
    });
  });
}

/**
 * The child's side: runs `fn` on the job and reports back. The process then
 * ends by running dry rather than by process.exit, so --cpu-prof gets to
 * write its profile and open handles show up as a hang instead of hiding.
 */
export function childMain<J, R>(fn: (job: J) => Promise<R>): void {
  const send = (msg: unknown) => new Promise<void>((r) => process.send!(msg, () => r()));
  void (async () => {
    if (!process.send) throw new Error('this module runs as a bench child (forked with IPC), not directly');
    try {
      const value = await fn(JSON.parse(process.argv[2]!) as J);
      await send({ ok: true, value });
    } catch (err) {
      await send({ ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
      process.exitCode = 1;
    }
    process.disconnect();
  })();
}
