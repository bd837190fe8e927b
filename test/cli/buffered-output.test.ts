/** A tool's stdout into a pipe or file goes out as C stdio's full buffering sends it: 4 KiB blocks, the rest on flush. */
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BlockBufferedOutput } from '../../bin/commands/tool-context.js';
import { BLOCKEMU, qemu, qemuImg, run, withTempDir } from '../helpers/qemu.js';

describe('BlockBufferedOutput', () => {
  it('holds output until a 4 KiB block is full, then sends whole blocks; flush sends the rest', () => {
    const sent: number[] = [];
    const out = new BlockBufferedOutput((b) => sent.push(b.length));
    out.write('x'.repeat(100));
    expect(sent).toEqual([]);
    out.write('y'.repeat(9000));
    expect(sent).toEqual([8192]);
    out.flush();
    expect(sent).toEqual([8192, 908]);
    out.flush();
    expect(sent).toEqual([8192, 908]);
  });

  it('sends every byte once, in order, whatever the writes (multi-byte characters split across blocks too)', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ unit: 'grapheme', maxLength: 3000 }), { maxLength: 12 }), (texts) => {
        const chunks: Buffer[] = [];
        const out = new BlockBufferedOutput((b) => chunks.push(Buffer.from(b)));
        for (const t of texts) out.write(t);
        out.flush();
        expect(Buffer.concat(chunks).toString()).toBe(texts.join(''));
        for (const c of chunks.slice(0, -1)) expect(c.length % 4096).toBe(0);
      }),
    );
  });
});

/** qemu-io and `blockemu io` with stdout and stderr into one pipe: what reaches it, in order (the program name and timing lines normalised). */
async function merged(tool: 'qemu' | 'blockemu', dir: string, commands: string[]): Promise<{ code: number | null; out: string }> {
  const prog = tool === 'qemu' ? 'qemu-io' : `${JSON.stringify(process.execPath)} ${JSON.stringify(BLOCKEMU)} io`;
  const img = join(dir, 't.qcow2');
  const cmd = `${prog} ${commands.map((c) => `-c ${JSON.stringify(c.replace('${IMG}', img))}`).join(' ')} ${JSON.stringify(img)} 2>&1`;
  const r = await run('sh', ['-c', `${cmd}; echo "status $?"`]);
  return { code: r.code, out: r.stdout.replace(/^(qemu-io|blockemu io): /gm, 'PROG: ').replace(/^\d+ bytes, .*$/gm, 'TIMING') };
}

describe.skipIf(!qemu.available)('blockemu io’s stdout into a pipe, as qemu-io’s', () => {
  it.each([
    // A failed open's stderr line comes before the stdout of the commands around it.
    [['write 0 512', 'close', 'open /nonexistent', 'open ${IMG}', 'write 512 512']],
    // sigraise writes out stdout first; abort(3) leaves it unwritten.
    [['write 0 512', 'sigraise 15']],
    [['write 0 512', 'abort']],
  ])('%j', async (commands) => {
    await withTempDir(async (dir) => {
      await qemuImg('create', '-q', '-f', 'qcow2', join(dir, 't.qcow2'), '1M');
      const theirs = await merged('qemu', dir, commands);
      const ours = await merged('blockemu', dir, commands);
      expect(ours).toEqual(theirs);
    });
  });
});
