/**
 * The `luks` image format (block/crypto.c) against qemu-img and qemu-io
 * 7.2: the same command lines through both tools with --object secrets and
 * key-secret, equal output, and each tool reading what the other wrote.
 * QEMU's own LUKS creation fails now and then on this machine ("Unable to
 * get accurate CPU usage": it times PBKDF2 in thread CPU time), so where
 * QEMU must make one, it is asked again on that error only.
 */
import { access, copyFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { qemu, run, runBlockemu } from '../helpers/qemu.js';
import { expectSameIn as same, must, scratch } from './img-oracle.js';

const SECRET = ['--object', 'secret,id=sec0,data=123456'];
const opts = (name: string, extra = '') => ['--image-opts', `driver=luks,key-secret=sec0,file.filename=${name}${extra}`];
/** The LUKS fields that differ from image to image (random salts and uuid, iterations measured on the spot). */
const unstable = (text: string) => text.replace(/(uuid|iters): .*/g, '$1: X').replace(/"(uuid|iters|master-key-iters)": [^,\n]*/g, '"$1": X');

const exists = (p: string) => access(p).then(() => true, () => false);

/** qemu-img create -f luks, asked again while QEMU cannot time its PBKDF2. */
async function qemuCreate(args: string[], cwd: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const r = await run('qemu-img', ['create', '-q', '-f', 'luks', ...args], { cwd });
    if (r.code === 0) return;
    if (!r.stderr.includes('Unable to get accurate CPU usage') || attempt === 5) throw new Error(`qemu-img create failed: ${r.stderr}`);
  }
}

describe.skipIf(!qemu.available)('the luks format (vs qemu-img and qemu-io)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeEach(async () => {
    s = await scratch();
  });
  afterEach(() => s.done());

  it('an image blockemu creates is QEMU’s to read, write, resize and convert, and the other way round', async () => {
    await runBlockemu(['img', 'create', '-q', '-f', 'luks', ...SECRET, '-o', 'key-secret=sec0,iter-time=10', join(s.dir, 'b.luks'), '4M']);
    await qemuCreate([...SECRET, '-o', 'key-secret=sec0,iter-time=10', join(s.dir, 'q.luks'), '4M'], s.dir);
    for (const first of ['b.luks', 'q.luks']) {
      const img = join(s.dir, first);
      const io = (extra: string[]) => [...SECRET, ...opts(img), ...extra];
      // Unaligned writes: partial sectors read, changed and written back whole.
      expect(await must('qemu-io', io(['-c', 'write -q -P 0x33 1000 70000', '-c', 'write -q -z 8k 1k']), s.dir)).toBe('');
      expect((await runBlockemu(['io', ...io(['-c', 'read -q -P 0x33 1000 7192', '-c', 'read -q -P 0 8k 1k', '-c', 'read -q -P 0x33 9k 61000', '-c', 'write -q -P 0x44 3M 1M', '-c', 'write -q -P 0x55 511 2'])])).stderr).toBe('');
      expect(await must('qemu-io', io(['-c', 'read -q -P 0x55 511 2', '-c', 'read -q -P 0x33 1000 7192', '-c', 'read -q -P 0x44 3M 1M']), s.dir)).toBe('');
      // info alike, with and without the key; probed as luks.
      for (const args of [['info', img], ['info', '--output=json', img], ['info', ...SECRET, ...opts(img)]]) {
        const b = await runBlockemu(['img', ...args]);
        const q = await run('qemu-img', args);
        expect(unstable(b.stdout)).toBe(unstable(q.stdout));
        expect(b.code).toBe(q.code);
      }
      // Converted to raw by both tools: the same bytes.
      await must('qemu-img', ['convert', ...SECRET, ...opts(img), '-O', 'raw', join(s.q, `${first}.raw`)], s.dir);
      expect((await runBlockemu(['img', 'convert', ...SECRET, ...opts(img), '-O', 'raw', join(s.b, `${first}.raw`)])).stderr).toBe('');
      expect(Buffer.compare(await readFile(join(s.q, `${first}.raw`)), await readFile(join(s.b, `${first}.raw`)))).toBe(0);
    }
    // Grown by blockemu, read by QEMU at the new size (what the growth adds is noise under the cipher, in both).
    expect((await runBlockemu(['img', 'resize', ...SECRET, ...opts(join(s.dir, 'b.luks')), '6M'])).stderr).toBe('');
    const q = await must('qemu-img', ['info', '--output=json', join(s.dir, 'b.luks')], s.dir);
    expect(JSON.parse(q)['virtual-size']).toBe(6 << 20);
    expect(await must('qemu-io', [...SECRET, ...opts(join(s.dir, 'b.luks')), '-c', 'read -q -P 0x44 3M 1M', '-c', 'write -q -P 0x66 5M 1M', '-c', 'read -q -P 0x66 5M 1M'], s.dir)).toBe('');
  });

  it('answers as QEMU does: map, check, keys, sizes and refusals', async () => {
    await runBlockemu(['img', 'create', '-q', '-f', 'luks', ...SECRET, '-o', 'key-secret=sec0,iter-time=10,cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=plain,hash-alg=sha1', join(s.dir, 'c.luks'), '1M']);
    const img = join(s.dir, 'c.luks');
    await same('img', ['map', ...SECRET, ...opts(img)], s);
    await same('img', ['map', '--output=json', ...SECRET, ...opts(img)], s);
    // No checks for this format, once it has opened (with its key).
    await same('img', ['check', ...SECRET, ...opts(img)], s);
    await same('img', ['check', img], s);
    // A wrong password, no secret, a secret that is not there, a key given to raw.
    await same('io', ['--object', 'secret,id=sec0,data=nope', ...opts(img), '-c', 'read -q 0 512'], s);
    await same('io', ['-f', 'luks', img, '-c', 'read -q 0 512'], s);
    await same('io', [...opts(img), '-c', 'read -q 0 512'], s);
    await same('io', [...SECRET, ...opts(img), '-c', 'read -q 0 512', '-c', 'length'], s);
    // Creation: the Formatting line, a missing key (the file is removed), bad values, backing files.
    await same('img', ['create', '-f', 'luks', ...SECRET, '-o', 'key-secret=sec0,iter-time=10,preallocation=metadata', 'p.luks', '64k'], s);
    await same('img', ['create', '-f', 'luks', '-o', 'iter-time=10', 'n.luks', '1M'], s);
    await same('img', ['create', '-f', 'luks', ...SECRET, '-o', 'key-secret=sec0,preallocation=foo', 'n.luks', '1M'], s);
    await same('img', ['create', '-f', 'luks', ...SECRET, '-o', 'key-secret=sec0', '-b', 'x', '-F', 'raw', 'n.luks', '1M'], s);
    // measure: the header a new image would have, made (key included) to learn its size.
    await same('img', ['measure', ...SECRET, '-O', 'luks', '-o', 'key-secret=sec0,iter-time=10', '--size', '1G'], s);
    await same('img', ['measure', '-O', 'luks', '--size', '1G'], s);
    await same('img', ['measure', ...SECRET, '-O', 'qcow2', '-o', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10', '--size', '1G'], s);
    // A password that is not UTF-8 is refused, and the new file removed.
    await writeFile(join(s.b, 'bad'), Buffer.from([0x3a, 0x3c, 0x3b, 0xff]));
    await writeFile(join(s.q, 'bad'), Buffer.from([0x3a, 0x3c, 0x3b, 0xff]));
    await same('img', ['create', '-f', 'luks', '--object', 'secret,id=sec0,file=bad', '-o', 'key-secret=sec0', 'u.luks', '1M'], s);
    expect(await exists(join(s.b, 'u.luks'))).toBe(false);
  });

  it('key slots added and erased as qemu-img amend does, each tool opening what the other amended', async () => {
    const SECRETS = ['--object', 'secret,id=sec0,data=hunter0', '--object', 'secret,id=sec1,data=hunter1', '--object', 'secret,id=sec2,data=hunter2'];
    const as = (name: string, id: string) => ['--image-opts', `driver=luks,file.filename=${name},key-secret=${id}`];
    await runBlockemu(['img', 'create', '-q', '-f', 'luks', ...SECRETS, '-o', 'key-secret=sec0,iter-time=10', join(s.b, 't.luks'), '1M']);
    await copyFile(join(s.b, 't.luks'), join(s.q, 't.luks'));
    const amend = (id: string, o: string, force = false) => same('img', ['amend', ...SECRETS, ...(force ? ['--force'] : []), ...as('t.luks', id), '-o', o], s);
    await amend('sec0', 'state=active,new-secret=sec1,iter-time=10,keyslot=3');
    await amend('sec0', 'state=active,new-secret=sec2,iter-time=10');
    await amend('sec0', 'state=active,new-secret=sec2,iter-time=10,keyslot=3');
    await amend('sec0', 'state=active,new-secret=sec2,iter-time=10,keyslot=9');
    await amend('sec0', 'state=active,iter-time=10');
    await amend('sec0', 'state=inactive,keyslot=5');
    await amend('sec0', 'state=inactive,old-secret=sec2,iter-time=10');
    await amend('sec0', 'state=inactive');
    await amend('sec0', 'state=bogus');
    await amend('sec0', 'keyslot=1');
    await amend('sec0', 'cipher-alg=aes-128');
    // Each tool opens with the secrets the other's amend left, and no longer with the erased one.
    for (const dir of [s.b, s.q]) {
      const img = join(dir, 't.luks');
      expect(await must('qemu-io', [...SECRETS, ...as(img, 'sec1'), '-c', 'read -q 0 512'], s.dir)).toBe('');
      expect((await runBlockemu(['io', ...SECRETS, ...as(img, 'sec2'), '-c', 'read -q 0 512'])).stderr).toBe('');
    }
    await amend('sec1', 'state=inactive,old-secret=sec0');
    await amend('sec1', 'state=inactive,old-secret=sec0');
    await same('io', [...SECRETS, ...as('t.luks', 'sec0'), '-c', 'read -q 0 512'], s);
    await amend('sec1', 'state=inactive,keyslot=1');
    await amend('sec2', 'state=inactive,old-secret=sec1');
    await amend('sec2', 'state=inactive,old-secret=sec2');
    await amend('sec2', 'state=inactive,old-secret=sec2', true);
    await same('io', [...SECRETS, ...as('t.luks', 'sec2'), '-c', 'read -q 0 512'], s);
  });

  it('a LUKS-encrypted qcow2’s key slots are amended as qemu-img amends them', async () => {
    const SECRETS = ['--object', 'secret,id=sec0,data=hunter0', '--object', 'secret,id=sec1,data=hunter1'];
    const as = (name: string, id: string) => ['--image-opts', `driver=qcow2,file.filename=${name},encrypt.key-secret=${id}`];
    await runBlockemu(['img', 'create', '-q', '-f', 'qcow2', ...SECRETS, '-o', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10', join(s.b, 'e.qcow2'), '1M']);
    await copyFile(join(s.b, 'e.qcow2'), join(s.q, 'e.qcow2'));
    const amend = (id: string, o: string) => same('img', ['amend', ...SECRETS, ...as('e.qcow2', id), '-o', o], s);
    await amend('sec0', 'encrypt.state=active,encrypt.new-secret=sec1,encrypt.iter-time=10');
    await amend('sec1', 'encrypt.state=inactive,encrypt.keyslot=0');
    await amend('sec1', 'encrypt.format=luks');
    await same('io', [...SECRETS, ...as('e.qcow2', 'sec0'), '-c', 'read -q 0 512'], s);
    expect(await must('qemu-io', [...SECRETS, ...as(join(s.b, 'e.qcow2'), 'sec1'), '-c', 'read -q 0 512'], s.dir)).toBe('');
    expect(await must('qemu-img', ['check', ...SECRETS, ...as(join(s.b, 'e.qcow2'), 'sec1')], s.dir)).toContain('No errors were found');
    await runBlockemu(['img', 'create', '-q', '-f', 'qcow2', 'p.qcow2', '1M'], { cwd: s.b });
    await copyFile(join(s.b, 'p.qcow2'), join(s.q, 'p.qcow2'));
    await same('img', ['amend', '-o', 'encrypt.state=active', 'p.qcow2'], s);
  });
});
