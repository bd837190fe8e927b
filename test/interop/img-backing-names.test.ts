/**
 * Backing files named as QEMU names them, against qemu-img and qemu-io 7.2
 * (iotests 020, 089, 110, 114, 126): `json:{…}` backing names opened as node
 * graphs (so blkdebug below a backing file fails a commit), `file:` names,
 * `create -u`, a header naming its backing format twice, `backing.driver`
 * and `'backing': null` in an open's options, and the backing file's actual
 * path of an image opened through a graph. Each scenario runs step by step
 * in a directory of its own for each tool, every step's output compared.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { qemu, run, runBlockemu } from '../helpers/qemu.js';
import { expectSameIn, must, scratch } from './img-oracle.js';

const same = expectSameIn;

/** Fixture steps, by qemu-img in both directories. */
async function fixture(s: { b: string; q: string }, ...args: string[]): Promise<void> {
  await must('qemu-img', args, s.b);
  await must('qemu-img', args, s.q);
}

/** The backing format extension (0xe2792aca) added once more after the others, as iotests' qcow2.py add-header-ext does. */
async function addBackingFormatExtension(path: string, value: string): Promise<void> {
  const buf = await readFile(path);
  const headerLength = buf.readUInt32BE(100);
  const backingOffset = Number(buf.readBigUInt64BE(8));
  const backing = buf.subarray(backingOffset, backingOffset + buf.readUInt32BE(16));
  const exts: Buffer[] = [];
  for (let off = headerLength; ; ) {
    const type = buf.readUInt32BE(off);
    const len = buf.readUInt32BE(off + 4);
    if (type === 0) break;
    exts.push(Buffer.from(buf.subarray(off, off + 8 + Math.ceil(len / 8) * 8)));
    off += 8 + Math.ceil(len / 8) * 8;
  }
  const data = Buffer.alloc(8 + Math.ceil(value.length / 8) * 8);
  data.writeUInt32BE(0xe2792aca, 0);
  data.writeUInt32BE(value.length, 4);
  data.write(value, 8);
  const area = Buffer.concat([...exts, data, Buffer.alloc(8), Buffer.from(backing)]);
  area.copy(buf, headerLength);
  buf.writeBigUInt64BE(BigInt(headerLength + area.length - backing.length), 8);
  await writeFile(path, buf);
}

describe.skipIf(!qemu.available)('backing file names as QEMU takes them (vs qemu-img and qemu-io)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeEach(async () => {
    s = await scratch();
  });
  afterEach(() => s.done());

  it('a json: backing name over blkdebug: the Formatting line doubles its commas, and the injected ENOSPC fails the commit as a block job (iotest 020)', async () => {
    await fixture(s, 'create', '-q', '-f', 'qcow2', 'base.qcow2', '1M');
    const backing =
      "json:{'driver': 'qcow2', 'file': { 'driver': 'blkdebug', 'inject-error': [{ 'event': 'write_aio', 'errno': 28, 'once': true }], 'image': { 'driver': 'file', 'filename': 'base.qcow2' }}}";
    await same('img', ['create', '-f', 'qcow2', '-b', backing, '-F', 'qcow2', 't.qcow2'], s);
    await same('io', ['-c', 'write -q -P 5 0 64k', 't.qcow2'], s);
    await same('img', ['info', '--backing-chain', 't.qcow2'], s);
    const r = await same('img', ['commit', 't.qcow2'], s);
    expect(r.stderr).toMatch(/Block job failed: No space left on device/);
    // Without the error the same backing name commits.
    await same('img', ['rebase', '-u', '-b', 'base.qcow2', '-F', 'qcow2', 't.qcow2'], s);
    await same('img', ['commit', 't.qcow2'], s);
    await same('io', ['-c', 'read -q -P 5 0 64k', 'base.qcow2'], s);
  });

  it('create -u records a backing file it does not open, and still needs its format and a size', async () => {
    await same('img', ['create', '-f', 'qcow2', '-u', '-b', 'missing.qcow2', '-F', 'qcow2', 'a.qcow2', '64M'], s);
    await same('img', ['create', '-f', 'qcow2', '-u', '-b', 'missing.qcow2', 'b.qcow2', '64M'], s);
    await same('img', ['create', '-f', 'qcow2', '-u', '-b', 'missing.qcow2', '-F', 'qcow2', 'c.qcow2'], s);
    await same('img', ['info', '-U', 'a.qcow2'], s);
    await same('img', ['create', '-f', 'qcow2', '-b', 'missing.qcow2', '-F', 'qcow2', 'd.qcow2', '64M'], s);
  });

  it('a backing format named twice in the header: the later one counts, and backing.driver overrides it (iotest 114)', async () => {
    await fixture(s, 'create', '-q', '-f', 'qcow2', 'base.qcow2', '64M');
    await fixture(s, 'create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 't.qcow2', '64M');
    for (const d of [s.b, s.q]) await addBackingFormatExtension(join(d, 't.qcow2'), 'foo');
    await same('img', ['info', 't.qcow2'], s);
    await same('io', ['-c', 'read -q 0 4k', 't.qcow2'], s);
    await same('io', ['-c', 'open -o backing.driver=qcow2 t.qcow2', '-c', 'read -q 0 4k'], s);
    await same('img', ['rebase', '-u', '-b', 'base.qcow2', 't.qcow2'], s);
    await same('img', ['rebase', '-u', '-b', 'base.qcow2', '-F', 'qcow2', 't.qcow2'], s);
    await same('img', ['info', 't.qcow2'], s);
  });

  it('file: names: the prefix opens the host file, a colon after it is part of the name, and info shows it as the file node does (iotest 126)', async () => {
    await same('img', ['create', '-f', 'qcow2', 'file:a:b.qcow2', '64M'], s);
    await same('img', ['info', './a:b.qcow2'], s);
    await same('img', ['create', '-f', 'qcow2', 'base.qcow2', '64M'], s);
    await same('img', ['create', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'file:image:top.qcow2'], s);
    await same('img', ['info', 'file:image:top.qcow2'], s);
    await same('img', ['info', '--output=json', 'file:image:top.qcow2'], s);
  });

  it('an image opened through a graph names its backing file from the host file below (bdrv_dirname; iotest 110)', async () => {
    await fixture(s, 'create', '-q', '-f', 'qcow2', 'sub-base.qcow2', '64M');
    for (const d of [s.b, s.q]) {
      await must('qemu-img', ['create', '-q', '-f', 'qcow2', 'base.qcow2', '64M'], d);
      await must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'top.qcow2'], d);
    }
    const dir = '..';
    await same('img', ['info', `json:{'driver':'qcow2','file':{'driver':'file','filename':'top.qcow2'}}`], s);
    // blkdebug without a config file leaves no name to rebuild; the directory still comes from its image.
    const blk = (d: string) => `json:{'driver':'qcow2','file':{'driver':'blkdebug','image':{'driver':'file','filename':'${join(d, 'top.qcow2')}'},'set-state':[{'event':'read_aio','new_state':42}]}}`;
    const b = await runBlockemu(['img', 'info', blk(s.b)], { cwd: s.b });
    const q = await run('qemu-img', ['info', blk(s.q)], { cwd: s.q });
    expect(b.stdout.replaceAll(s.b, dir)).toBe(q.stdout.replaceAll(s.q, dir));
    expect(b.stdout).toContain(`backing file: base.qcow2 (actual path: ${join(s.b, 'base.qcow2')})`);
  });

  it("'backing': null in a json: name opens no backing file, and options beside the name win over its own (iotest 089)", async () => {
    await fixture(s, 'create', '-q', '-f', 'qcow2', 'base.qcow2', '64M');
    for (const d of [s.b, s.q]) await must('qemu-io', ['-c', 'write -q -P 42 0 512', 'base.qcow2'], d);
    await fixture(s, 'create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 't.qcow2', '64M');
    await same('io', ['-c', 'read -q -P 42 0 512', 't.qcow2'], s);
    await same('io', ['-c', 'read -q -P 0 0 512', "json:{'driver':'qcow2','file':{'driver':'file','filename':'t.qcow2'},'backing':null}"], s);
    await same('io', ['-c', 'open -o driver=qcow2 json:{"driver":"raw","file.filename":"t.qcow2"}', '-c', 'info'], s);
    await same('io', ['-c', 'open -o driver=qcow2 json:{"file.filename":"t.qcow2"}', '-c', 'info'], s);
  });
});
