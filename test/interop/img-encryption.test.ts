/**
 * Encrypted qcow2 images (legacy AES and LUKS) against qemu-img and
 * qemu-io 7.2: the same command lines through both tools with --object
 * secrets and encrypt.key-secret, equal output, and each tool reading what
 * the other wrote. QEMU's own LUKS creation measures PBKDF2 in thread CPU
 * time and fails here now and then ("Unable to get accurate CPU usage"),
 * so LUKS images are made by blockemu and read by QEMU, and QEMU's LUKS
 * reading is checked on images it wrote into.
 */
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { qemu, run, runBlockemu } from '../helpers/qemu.js';
import { expectSameIn, must, scratch } from './img-oracle.js';

const same = expectSameIn;
const SECRET = ['--object', 'secret,id=sec0,data=123456'];
const opts = (name: string, extra = '') => ['--image-opts', `driver=qcow2,file.filename=${name},encrypt.key-secret=sec0${extra}`];
/** The LUKS fields that differ from image to image (random salts and uuid, iterations measured on the spot). */
const unstable = (text: string) => text.replace(/(uuid|iters): .*/g, '$1: X').replace(/"(uuid|iters|master-key-iters)": [^,\n]*/g, '"$1": X');

describe.skipIf(!qemu.available)('encrypted qcow2 (vs qemu-img and qemu-io)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeEach(async () => {
    s = await scratch();
  });
  afterEach(() => s.done());

  it('legacy AES: created, written, read, checked, mapped and converted as QEMU does', async () => {
    await same('img', ['create', '-f', 'qcow2', ...SECRET, '-o', 'encryption=on,encrypt.key-secret=sec0', 't.qcow2', '4M'], s);
    await same('img', ['info', 't.qcow2'], s);
    await same('img', ['info', '--output=json', 't.qcow2'], s);
    await same('io', [...SECRET, ...opts('t.qcow2'), '-c', 'write -q -P 0x11 1k 3k', '-c', 'write -q -P 0x22 100k 200k', '-c', 'write -q -z 120k 8k', '-c', 'discard -q 256k 64k'], s);
    await same('io', [...SECRET, ...opts('t.qcow2'), '-c', 'read -q -P 0 0 1k', '-c', 'read -q -P 0x11 1k 3k', '-c', 'read -q -P 0 120k 8k', '-c', 'read -q -P 0x22 128k 128k'], s);
    await same('img', ['map', ...SECRET, ...opts('t.qcow2')], s);
    await same('img', ['map', '--output=json', ...SECRET, ...opts('t.qcow2')], s);
    await same('img', ['check', ...SECRET, ...opts('t.qcow2')], s);
    await same('img', ['convert', ...SECRET, ...opts('t.qcow2'), '-O', 'raw', 't.raw'], s);
    // Into a new encrypted target: created with the -o key, then opened with it.
    await same('img', ['convert', ...SECRET, '-O', 'qcow2', '-o', 'encryption=on,encrypt.key-secret=sec0', 't.raw', 'c.qcow2'], s);
    await same('img', ['info', 'c.qcow2'], s);
    await same('img', ['compare', ...SECRET, '--image-opts', 'driver=raw,file.filename=t.raw', 'driver=qcow2,file.filename=c.qcow2,encrypt.key-secret=sec0'], s);
    // Each tool reads the other's image.
    for (const [dir, other] of [
      [s.b, s.q],
      [s.q, s.b],
    ] as const) {
      const r = await run('qemu-io', [...SECRET, ...opts(join(other, 't.qcow2')), '-c', 'read -q -P 0x22 128k 128k'], { cwd: dir });
      expect(r).toMatchObject({ code: 0, stderr: '' });
    }
    await must('qemu-img', ['compare', join(s.b, 't.raw'), join(s.q, 't.raw')], s.dir);
  });

  it('LUKS images blockemu creates are QEMU’s to read, write and check, and the other way round', async () => {
    await runBlockemu(['img', 'create', '-q', '-f', 'qcow2', ...SECRET, '-o', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10', join(s.dir, 'l.qcow2'), '4M']);
    const luks = (extra: string[]) => [...SECRET, ...opts(join(s.dir, 'l.qcow2')), ...extra];
    expect(await must('qemu-io', luks(['-c', 'write -q -P 0x33 3k 70k', '-c', 'read -q -P 0x33 3k 70k', '-c', 'read -q -P 0 0 3k']), s.dir)).toBe('');
    expect((await runBlockemu(['io', ...luks(['-c', 'read -q -P 0x33 3k 70k', '-c', 'write -q -P 0x44 1000 3000', '-c', 'write -q -P 0x55 2M 1M'])])).stderr).toBe('');
    expect(await must('qemu-io', luks(['-c', 'read -q -P 0x44 1000 3000', '-c', 'read -q -P 0x33 4000 68k', '-c', 'read -q -P 0x55 2M 1M']), s.dir)).toBe('');
    expect(await must('qemu-img', ['check', ...luks([])], s.dir)).toContain('No errors were found on the image.');
    // info alike but for the random and measured fields; the image's LUKS parameters are QEMU's defaults.
    const b = await runBlockemu(['img', 'info', join(s.dir, 'l.qcow2')]);
    const q = await run('qemu-img', ['info', join(s.dir, 'l.qcow2')]);
    expect(unstable(b.stdout)).toBe(unstable(q.stdout));
    expect(q.stdout).toContain('cipher alg: aes-256');
    expect(q.stdout).toContain('cipher mode: xts');
    const bj = await runBlockemu(['img', 'info', '--output=json', join(s.dir, 'l.qcow2')]);
    const qj = await run('qemu-img', ['info', '--output=json', join(s.dir, 'l.qcow2')]);
    expect(unstable(bj.stdout)).toBe(unstable(qj.stdout));
    // Both tools, the same answers for the wrong password, no secret and a secret that is not there.
    const wrong = ['--object', 'secret,id=sec0,data=nope', ...opts(join(s.dir, 'l.qcow2')), '-c', 'read -q 0 512'];
    await same('io', wrong, s);
    await same('io', [join(s.dir, 'l.qcow2'), '-c', 'read -q 0 512'], s);
    await same('io', [...opts(join(s.dir, 'l.qcow2')), '-c', 'read -q 0 512'], s);
    await same('img', ['map', '--output=json', ...luks([])], s);
  });

  it('creation refusals and --object errors in qemu-img’s words', async () => {
    await same('img', ['create', '-f', 'qcow2', '-o', 'encrypt.format=luks', 'n.qcow2', '1M'], s);
    await same('img', ['create', '-f', 'qcow2', '-o', 'encrypt.format=aes', 'n.qcow2', '1M'], s);
    await same('img', ['create', '-f', 'qcow2', '-o', 'encrypt.format=foo,encrypt.key-secret=sec0', 'n.qcow2', '1M'], s);
    await same('img', ['create', '-f', 'qcow2', '--object', 'secret,id=sec0', '-o', 'encryption=on,encrypt.key-secret=sec0', 'n.qcow2', '1M'], s);
    await same('img', ['create', '-f', 'qcow2', '--object', 'nosuch,id=x', 'n.qcow2', '1M'], s);
    await same('img', ['create', '-f', 'qcow2', ...SECRET, '-o', 'encryption=on,encrypt.key-secret=sec1', 'n.qcow2', '1M'], s);
    await same('img', ['info', 'n.qcow2'], s);
  });
});
