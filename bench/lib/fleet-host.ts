/**
 * The in-process side of `bench fleet` (and `bench startup`'s embedded
 * rows): one Node process that hosts daemons through the embedding API
 * (`startDaemon`, what a test suite calls), forked by the bench with IPC.
 * It loads blockemu's ES modules as a library user's process does (not the
 * executables' bundle) with V8's default flags.
 */
import { connect } from 'node:net';
import type { StartDaemonOptions } from '../../src/embed.js';

export interface FleetHostJob {
  kind: 'fleet';
  /** One startDaemon call each, all at once (the spawned fleet starts its processes at once too). */
  daemons: Array<{ socketPath: string; blockdevs: NonNullable<StartDaemonOptions['blockdevs']> }>;
}

export interface StartTimesJob {
  kind: 'start-times';
  dir: string;
  starts: number;
  blockdevs: NonNullable<StartDaemonOptions['blockdevs']>;
}

/** Per start: startDaemon() resolved (socket listening), and a client's qmp_capabilities answered. */
export interface StartTimes {
  resolvedMs: number[];
  servedMs: number[];
  /** Time to import the embedding module (first use only). */
  importMs: number;
}

/** Greeting, qmp_capabilities, its reply: what a raw client does before its first command. */
function negotiate(path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    let buf = '';
    let lines = 0;
    s.setEncoding('utf8');
    s.on('error', reject);
    s.on('data', (d: string) => {
      buf += d;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        buf = buf.slice(nl + 1);
        if (++lines === 1) s.write('{"execute":"qmp_capabilities"}\n');
        else {
          s.destroy();
          resolve();
          return;
        }
      }
    });
  });
}

/** Sequential starts in this process: the first pays module loading and compilation, the rest are what each further test pays. */
async function startTimes(job: StartTimesJob): Promise<StartTimes> {
  const t0 = performance.now();
  const { startDaemon } = await import('../../src/embed.js');
  const importMs = performance.now() - t0;
  const resolvedMs: number[] = [];
  const servedMs: number[] = [];
  for (let i = 0; i < job.starts; i++) {
    const socketPath = `${job.dir}/embedded-${process.pid}-${i}.sock`;
    const t1 = performance.now();
    const d = await startDaemon({ socketPath, blockdevs: job.blockdevs });
    resolvedMs.push(performance.now() - t1);
    await negotiate(socketPath);
    servedMs.push(performance.now() - t1);
    await d.close();
  }
  return { resolvedMs, servedMs, importMs };
}

async function fleet(job: FleetHostJob): Promise<void> {
  const { startDaemon } = await import('../../src/embed.js');
  const started = await Promise.all(job.daemons.map((d) => startDaemon(d)));
  process.send!({ ready: true });
  // The bench quits each daemon over QMP, then disconnects: what is still open is closed and the process runs dry.
  await new Promise<void>((r) => process.once('disconnect', () => r()));
  await Promise.all(started.map((d) => d.close()));
}

const job = JSON.parse(process.argv[2]!) as FleetHostJob | StartTimesJob;
if (job.kind === 'fleet') {
  fleet(job).catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
} else {
  startTimes(job).then(
    (r) => process.send!(r, () => process.disconnect()),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
