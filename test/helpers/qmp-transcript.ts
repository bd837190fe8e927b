/**
 * Helpers for QMP sessions played against qemu-storage-daemon and blockemu
 * and compared as transcripts: each command's reply or error as QMP says
 * it, and a blockdev-create job run to its end.
 */
import type { QmpClient } from '../../src/qmp/client.js';

/** A reply or an error, as the session's transcript records it. */
export async function answer(c: QmpClient, cmd: string, args: Record<string, unknown>): Promise<unknown> {
  try {
    return { return: await c.execute<unknown>(cmd, args) };
  } catch (err) {
    const e = err as { qmpClass?: string; desc?: string };
    return { error: { class: e.qmpClass, desc: e.desc } };
  }
}

/** One blockdev-create run to its end: the concluded job's error (or none), then dismissed; a refused command's error as it is. */
export async function createJob(c: QmpClient, options: Record<string, unknown>): Promise<unknown> {
  const started = await answer(c, 'blockdev-create', { 'job-id': 'c', options });
  if (!('return' in (started as object))) return started;
  await c.waitForEvent('JOB_STATUS_CHANGE', (e) => e.data?.['id'] === 'c' && e.data['status'] === 'concluded');
  const job = (await c.execute<Array<Record<string, unknown>>>('query-jobs')).find((j) => j['id'] === 'c');
  await c.execute('job-dismiss', { id: 'c' });
  return { error: job?.['error'] };
}
