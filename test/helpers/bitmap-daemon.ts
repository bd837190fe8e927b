/**
 * A daemon (qemu-storage-daemon or blockemu) holding one qcow2 image as
 * node `disk`, for tests that compare what the two make of the image's
 * dirty bitmaps.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { QmpClient } from '../../src/qmp/client.js';
import { BLOCKEMU } from './qemu.js';

export type Daemon = 'qsd' | 'blockemu';
interface NodeInfo {
  'node-name': string;
  'dirty-bitmaps'?: unknown[];
  image: { 'format-specific'?: { data: { bitmaps?: unknown[] } } };
}

/** The image's node as both daemons describe it: its bitmaps in memory and in the image's directory. */
export async function bitmapView(c: QmpClient): Promise<{ dirty: unknown; stored: unknown }> {
  const nodes = await c.execute<NodeInfo[]>('query-named-block-nodes', { flat: true });
  const disk = nodes.find((n) => n['node-name'] === 'disk')!;
  return { dirty: disk['dirty-bitmaps'] ?? [], stored: disk.image['format-specific']?.data.bitmaps ?? [] };
}

/** Runs `fn` against a daemon holding `image` as node `disk` (with `bare`, no node); quits it (or, with `kill`, kills it) afterwards. */
export async function withDaemon<T>(which: Daemon, image: string, fn: (c: QmpClient) => Promise<T>, opts: { kill?: boolean; bare?: boolean } = {}): Promise<T> {
  const sock = `${image}.${which}.sock`;
  const args = [
    // bare: no nodes (the test adds them itself).
    ...(opts.bare ? [] : ['--blockdev', `driver=file,node-name=disk-file,filename=${image}`, '--blockdev', 'driver=qcow2,node-name=disk,file=disk-file']),
    '--chardev', `socket,id=m,path=${sock},server=on,wait=off`,
    '--monitor', 'chardev=m',
  ];
  const proc: ChildProcess = which === 'qsd' ? spawn('qemu-storage-daemon', args, { stdio: 'ignore' }) : spawn(process.execPath, [BLOCKEMU, 'daemon', ...args], { stdio: 'ignore' });
  let client: QmpClient | undefined;
  for (let i = 0; i < 200 && !client; i++) {
    if (proc.exitCode !== null) throw new Error(`${which} exited with ${proc.exitCode}`);
    client = await QmpClient.connect(sock).catch(async () => {
      await sleep(25);
      return undefined;
    });
  }
  if (!client) throw new Error(`${which}: no QMP socket`);
  try {
    return await fn(client);
  } finally {
    if (opts.kill) proc.kill('SIGKILL');
    else await client.execute('quit').catch(() => undefined);
    await client.close();
    if (proc.exitCode === null && proc.signalCode === null) await new Promise((r) => proc.once('exit', r));
  }
}

