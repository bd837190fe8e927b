import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openBlockdev } from '../blockdev/open.js';
import { Daemon } from '../daemon.js';
import { createImage, openImage } from '../image/open.js';
import { makeQmpParser } from '../qmp/parser.js';

export interface DemoIo {
  out(text: string): void;
}

export interface DemoDaemon {
  daemon: Daemon;
  /** Resolves once the daemon has exited and a temporary directory the demo made is gone. */
  done: Promise<void>;
}

/**
 * `blockemu demo` (what `npm start` runs): the daemon on two fresh images —
 * disk0, a 64 MiB raw disk, and disk1, a 64 MiB qcow2 image with some data
 * — with a QMP socket and an NBD server in the same temporary directory
 * (disk1 exported read-only), and a printed example of driving it. Runs
 * until quit, SIGINT or SIGTERM; a temporary directory it made goes with it
 * (one given with --dir stays, with the images).
 */
export async function runDaemonDemo(io: DemoIo, dir?: string): Promise<DemoDaemon> {
  const temporary = dir === undefined ? await mkdtemp(join(tmpdir(), 'blockemu-demo-')) : undefined;
  const removeTemporary = async () => {
    if (temporary !== undefined) await rm(temporary, { recursive: true, force: true });
  };
  try {
    const daemon = await startDemo(io, temporary ?? dir!);
    return { daemon, done: daemon.whenExited().then(removeTemporary) };
  } catch (err) {
    await removeTemporary();
    throw err;
  }
}

async function startDemo(io: DemoIo, where: string): Promise<Daemon> {
  const raw = join(where, 'disk0.raw');
  const qcow2 = join(where, 'disk1.qcow2');
  const sock = join(where, 'qmp.sock');
  const nbd = join(where, 'nbd.sock');
  await createImage(raw, { format: 'raw', size: 64 << 20 });
  await createImage(qcow2, { format: 'qcow2', size: 64 << 20 });
  const img = await openImage(qcow2, { format: 'qcow2' });
  await img.write(0, new Uint8Array(1 << 20).fill(0x5a));
  await img.close();

  const daemon = await Daemon.start({ monitors: [{ path: sock }], makeParser: makeQmpParser });
  await openBlockdev(daemon.graph, { driver: 'raw', 'node-name': 'disk0', file: { driver: 'file', 'node-name': 'disk0-file', filename: raw } });
  await openBlockdev(daemon.graph, { driver: 'qcow2', 'node-name': 'disk1', file: { driver: 'file', 'node-name': 'disk1-file', filename: qcow2 } });
  await daemon.exports.startNbdServer({ type: 'unix', path: nbd }, {});
  await daemon.exports.add({ id: 'e1', nodeName: 'disk1' });

  const cli = `node ${join(import.meta.dirname, '..', '..', 'bin', 'blockemu.js')}`;
  io.out(
    [
      `blockemu demo: the daemon is running (pid ${process.pid})`,
      `  images:  ${raw} (node disk0, raw)`,
      `           ${qcow2} (node disk1, qcow2, first MiB written with 0x5a)`,
      `  QMP:     ${sock}`,
      `  NBD:     ${nbd} (export disk1, read-only)`,
      '',
      'Try, from another terminal:',
      `  ${cli} qmp -s ${sock} query-version`,
      `  ${cli} qmp -s ${sock} human-monitor-command '{"command-line": "qemu-io disk1 \\"read -P 0x5a 0 64k\\""}'`,
      `  ${cli} qmp -s ${sock}            # an interactive QMP shell`,
      `  socat - UNIX-CONNECT:${sock}     # raw QMP, as with qemu-storage-daemon`,
      `  qemu-img map --output=json 'nbd+unix:///disk1?socket=${nbd}'   # QEMU's tools read the export`,
      '',
      'Stop it with Ctrl-C or the quit command.',
      '',
    ].join('\n'),
  );
  return daemon;
}
