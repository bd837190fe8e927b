/**
 * The qemu-io interpreter on an in-memory target (and on a real raw file):
 * parsing, checks in qemu-io's order, and output formats. Expected texts
 * were taken from qemu-io 7.2 runs; the interop tests compare against the
 * real tool on every run.
 */
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { BlockError } from '../../src/image/errors.js';
import { openImage } from '../../src/image/open.js';
import { RawImage } from '../../src/image/raw.js';
import { QemuIoSession, runQemuIoCommand, type QemuIoTarget, type IoExtent, type InterpreterOptions } from '../../src/blockdev/qemu-io/index.js';
import { getopt } from '../../src/blockdev/qemu-io/getopt.js';
import { cvtnum, parsePattern } from '../../src/blockdev/qemu-io/numbers.js';
import { fixed } from '../../src/blockdev/qemu-io/printf.js';
import { hexDump, humanSize, reportLines, timeString } from '../../src/blockdev/qemu-io/report.js';
import { withTempDir } from '../helpers/qemu.js';

/** A byte array with per-4k allocation bits, failure injection and a call log. */
class MemTarget implements QemuIoTarget {
  readonly data: Uint8Array;
  readonly alloc: boolean[];
  readonly calls: string[] = [];
  fail: { op: string; err: unknown } | undefined;
  writeCompressed?: (offset: number, data: Uint8Array) => Promise<void>;
  constructor(
    size: number,
    public readOnly = false,
    private readonly clusterSize = 4096,
  ) {
    this.data = new Uint8Array(size);
    this.alloc = new Array<boolean>(Math.ceil(size / 4096)).fill(false);
  }
  private maybeFail(op: string): void {
    this.calls.push(op);
    if (this.fail?.op === op) throw this.fail.err;
  }
  private mark(offset: number, length: number, v: boolean): void {
    for (let b = Math.floor(offset / 4096); b * 4096 < offset + length; b++) this.alloc[b] = v;
  }
  size(): number {
    return this.data.length;
  }
  async read(offset: number, length: number): Promise<Uint8Array> {
    this.maybeFail(`read ${offset} ${length}`.startsWith('read') ? 'read' : '');
    return this.data.slice(offset, offset + length);
  }
  async write(offset: number, data: Uint8Array, opts?: { fua?: boolean }): Promise<void> {
    this.maybeFail(opts?.fua ? 'write fua' : 'write');
    this.data.set(data, offset);
    this.mark(offset, data.length, true);
  }
  async writeZeroes(offset: number, length: number, opts?: { mayUnmap?: boolean; fua?: boolean }): Promise<void> {
    this.maybeFail(`zeroes mayUnmap=${opts?.mayUnmap === true}${opts?.fua ? ' fua' : ''}`);
    this.data.fill(0, offset, offset + length);
    this.mark(offset, length, opts?.mayUnmap !== true);
  }
  async discard(offset: number, length: number): Promise<void> {
    this.maybeFail(`discard ${offset} ${length}`);
  }
  async flush(): Promise<void> {
    this.maybeFail('flush');
  }
  async blockStatus(offset: number, length: number): Promise<IoExtent> {
    this.maybeFail('status');
    const first = this.alloc[Math.floor(offset / 4096)]!;
    let end = offset;
    while (end < offset + length && this.alloc[Math.floor(end / 4096)] === first) end = (Math.floor(end / 4096) + 1) * 4096;
    return { length: Math.min(end, offset + length) - offset, allocated: first, depth: 0 };
  }
  info(): { clusterSize: number } {
    return { clusterSize: this.clusterSize };
  }
}

/** A clock where every request takes exactly 2 ms. */
function fakeClock(): () => bigint {
  let t = 0n;
  return () => (t += 2_000_000n);
}

async function io(target: QemuIoTarget | undefined, line: string, opts: InterpreterOptions = {}) {
  return runQemuIoCommand(line, target, { now: fakeClock(), ...opts });
}

describe('printf and report formats', () => {
  it('rounds exact ties to even like glibc, not away from zero like toFixed', () => {
    expect(fixed(1.0625, 3)).toBe('1.062');
    expect(fixed(1.0635, 3)).toBe('1.063'); // 1.0635 is not exactly representable: just below the tie
    expect(fixed(0.125, 2)).toBe('0.12');
    expect(fixed(0.375, 2)).toBe('0.38');
    expect(fixed(2.5, 0)).toBe('2');
    expect(fixed(318.1324351, 6)).toBe('318.132435');
    expect(fixed(0, 4)).toBe('0.0000');
    expect(fixed(Infinity, 3)).toBe('inf');
  });

  it('prints sizes as cvtstr does', () => {
    expect(humanSize(0)).toBe('0 bytes');
    expect(humanSize(1000)).toBe('1000 bytes');
    expect(humanSize(1024)).toBe('1 KiB');
    expect(humanSize(1088)).toBe('1.062 KiB');
    expect(humanSize(1536)).toBe('1.500 KiB');
    expect(humanSize(65536)).toBe('64 KiB');
    expect(humanSize(2 ** 20)).toBe('1 MiB');
    expect(humanSize(3 * 2 ** 30 + 2 ** 29)).toBe('3.500 GiB');
    expect(humanSize(7 * 2 ** 60)).toBe('7 EiB');
    expect(humanSize(318.1324351)).toBe('318.132435 bytes');
    // The first ".000" ends the number, even after the point: 100.0005 prints as "100.000500".
    expect(humanSize(100.0005)).toBe('100 bytes');
  });

  it('prints times as timestr does', () => {
    expect(timeString({ sec: 0, nsec: 4_000_000 }, false)).toBe('00.00 sec');
    expect(timeString({ sec: 0, nsec: 420_000_000 }, false)).toBe('00.42 sec');
    expect(timeString({ sec: 0, nsec: 999_000_000 }, false)).toBe('01.00 sec');
    expect(timeString({ sec: 3725, nsec: 500_000_000 }, false)).toBe('1:02:05.50');
    expect(timeString({ sec: 0, nsec: 0 }, true)).toBe('0:00:00.00');
  });

  it('prints the report lines', () => {
    const t = { sec: 0, nsec: 2_000_000 };
    expect(reportLines('wrote', t, 4096, 65536, 65536, 1, false)).toBe(
      'wrote 65536/65536 bytes at offset 4096\n64 KiB, 1 ops; 00.00 sec (31.250 MiB/sec and 500.0000 ops/sec)\n',
    );
    expect(reportLines('read', t, 0, 512, 512, 1, true)).toBe('512,1,0:00:00.00,256000.000,500.000\n');
  });

  it('dumps like qemu-io: short last line unpadded, only letters and digits shown', () => {
    const buf = new Uint8Array([0x41, 0x20, 0x7a, 0x39, 0x23, 0, 0xff, 0x2e, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x30, 0x31]);
    expect(hexDump(buf, 0x1000)).toBe(
      '00001000:  41 20 7a 39 23 00 ff 2e 61 62 63 64 65 66 67 68  A.z9....abcdefgh\n' + '00001010:  30 31  01\n',
    );
    expect(hexDump(new Uint8Array(1), 2 ** 33)).toBe('200000000:  00  .\n');
  });
});

describe('qemu_strtosz as qemu-io 7.2 parses numbers', () => {
  const ok = (s: string) => {
    const r = cvtnum(s);
    return r.ok ? r.value : r.error;
  };
  it.each([
    ['0', 0n],
    ['512', 512n],
    ['1k', 1024n],
    ['1K', 1024n],
    ['64k', 65536n],
    ['1M', 1048576n],
    ['1b', 1n],
    ['1B', 1n],
    ['+1', 1n],
    ['\t1', 1n],
    ['010', 10n],
    ['0x10', 16n],
    ['0X10', 16n],
    ['0x1E', 30n],
    ['1.', 1n],
    ['1.0', 1n],
    ['1.k', 1024n],
    ['1.5k', 1536n],
    ['0.5k', 512n],
    ['0.0005k', 1n], // 0.512 rounds half up
    ['0.00049k', 1n],
    ['0.00048k', 0n],
    ['1.0000000001k', 1024n],
    ['0.333333333333333333333333333G', 357913941n],
    ['0.99999999999999999k', 0n], // the fraction is 1.0 as a double; qemu's conversion drops it
    ['7E', 7n << 60n],
    ['9223372036854775807', 9223372036854775807n],
    ['1.5', 'EINVAL'],
    ['0.1', 'EINVAL'],
    ['1.25b', 'EINVAL'],
    ['.5k', 'EINVAL'],
    ['1kB', 'EINVAL'],
    ['1e3', 'EINVAL'],
    ['1.e5', 'EINVAL'],
    ['1.5e3k', 'EINVAL'],
    ['00x10', 'EINVAL'],
    ['0x-1', 'EINVAL'],
    ['0x', 'EINVAL'],
    ['0x1.8k', 'EINVAL'],
    ['-0', 'EINVAL'],
    ['-1', 'EINVAL'],
    ['x', 'EINVAL'],
    ['', 'EINVAL'],
    ['99999999999999999999k', 'EINVAL'], // overflow with junk after it is "non-numeric"
    ['99999999999999999999', 'ERANGE'],
    ['9223372036854775808', 'ERANGE'],
    ['18446744073709551615', 'ERANGE'],
    ['8E', 'ERANGE'],
    ['16E', 'ERANGE'],
    ['16384P', 'ERANGE'],
  ] as const)('%j → %s', (text, want) => {
    expect(ok(text)).toBe(want);
  });

  it('warns about hex numbers with a unit, and accepts them', () => {
    expect(cvtnum('0x10k')).toEqual({ ok: true, value: 16384n, warning: 'Using a multiplier suffix on hex numbers is deprecated: 0x10k' });
    expect(cvtnum('0x10')).toEqual({ ok: true, value: 16n });
  });

  it.each([
    ['0', 0],
    ['0xab', 0xab],
    ['0XAB', 0xab],
    ['0101', 65],
    ['255', 255],
    ['-0', 0],
    ['+7', 7],
    ['256', undefined],
    ['0x100', undefined],
    ['-1', undefined],
    ['abc', undefined],
    ['08', undefined],
    ['0x', undefined],
    ['5k', undefined],
  ] as const)('pattern %j → %s', (text, want) => {
    expect(parsePattern(text)).toBe(want);
  });
});

describe('getopt (GNU, permuting)', () => {
  it('takes options after operands, clusters and values in either form', () => {
    expect(getopt(['read', '0', '-vq', '512', '-P0xab', '-s', '4'], 'bCl:pP:qs:v')).toEqual({
      options: [
        { opt: 'v', value: '' },
        { opt: 'q', value: '' },
        { opt: 'P', value: '0xab' },
        { opt: 's', value: '4' },
      ],
      operands: ['0', '512'],
    });
  });
  it('ends options at "--", treats "-" as an operand, and lets a value start with a dash', () => {
    expect(getopt(['read', '-l', '-5', '-', '--', '-1', '-q'], 'l:q')).toEqual({
      options: [{ opt: 'l', value: '-5' }],
      operands: ['-', '-1', '-q'],
    });
  });
  it('reports bad options as getopt prints them, after the good ones before', () => {
    expect(getopt(['r', '-q', '-x', '0'], 'q')).toEqual({ options: [{ opt: 'q', value: '' }], error: "r: invalid option -- 'x'\n", operands: [] });
    expect(getopt(['read', '0', '-l'], 'l:').error).toBe("read: option requires an argument -- 'l'\n");
    expect(getopt(['read', '--help'], 'q').error).toBe("read: invalid option -- '-'\n");
    expect(getopt(['read', '-:'], 'l:').error).toBe("read: invalid option -- ':'\n");
  });
});

describe('qemu-io commands on an in-memory image', () => {
  it('writes and reads back with patterns, reporting like qemu-io', async () => {
    const t = new MemTarget(1 << 20);
    const w = await io(t, 'write -P 0xab 4096 64k');
    expect(w.failed).toBe(false);
    expect(w.stdout).toBe('wrote 65536/65536 bytes at offset 4096\n64 KiB, 1 ops; 00.00 sec (31.250 MiB/sec and 500.0000 ops/sec)\n');
    expect(w.stderr).toBe('');
    expect(t.data[4096]).toBe(0xab);
    expect(t.data[4096 + 65535]).toBe(0xab);
    expect(t.data[4095]).toBe(0);
    expect(t.data[4096 + 65536]).toBe(0);
    const r = await io(t, 'r -P 171 4k 64k');
    expect(r.failed).toBe(false);
    expect(r.stdout).toMatch(/^read 65536\/65536 bytes at offset 4096\n64 KiB, 1 ops; /);
  });

  it('fills with 0xcd by default', async () => {
    const t = new MemTarget(4096);
    await io(t, 'write 1 2');
    expect([...t.data.subarray(0, 4)]).toEqual([0, 0xcd, 0xcd, 0]);
  });

  it('fails pattern verification but still prints the statistics', async () => {
    const t = new MemTarget(4096);
    t.data[100] = 1;
    const r = await io(t, 'read -P 0 0 512');
    expect(r.failed).toBe(true);
    expect(r.stdout).toBe(
      'Pattern verification failed at offset 0, 512 bytes\nread 512/512 bytes at offset 0\n512 bytes, 1 ops; 00.00 sec (250 KiB/sec and 500.0000 ops/sec)\n',
    );
    // -s/-l narrow the check (and its message) to part of the read.
    const narrow = await io(t, 'read -P 0 -s 101 -l 50 0 512');
    expect(narrow.failed).toBe(false);
    const hit = await io(t, 'read -q -P 0 -s 90 -l 20 0 512');
    expect(hit.failed).toBe(true);
    expect(hit.stdout).toBe('Pattern verification failed at offset 90, 20 bytes\n');
  });

  it('verifies patterns across the pieces a large read is split into', async () => {
    const t = new MemTarget(9 << 20);
    t.data.fill(7);
    t.data[(8 << 20) + 5] = 8;
    const r = await io(t, 'read -q -P 7 0 9M');
    expect(r.stdout).toBe(`Pattern verification failed at offset 0, ${9 << 20} bytes\n`);
    t.data[(8 << 20) + 5] = 7;
    expect((await io(t, 'read -q -P 7 0 9M')).failed).toBe(false);
  });

  it('checks the pattern range and options in qemu-io order', async () => {
    const t = new MemTarget(4096);
    expect((await io(t, 'read -P 0 -s 600 0 512')).stdout).toBe('pattern verification range exceeds end of read data\n');
    expect((await io(t, 'read -P 0 -l 600 0 512')).stdout).toBe('pattern verification range exceeds end of read data\n');
    const usage = 'read [-abCqv] [-P pattern [-s off] [-l len]] off len -- reads a number of bytes at a specified offset\n';
    expect((await io(t, 'read -l 5 0 512')).stdout).toBe(usage);
    // The length cap comes before that usage check.
    expect((await io(t, 'read -l 5 0 3G')).stdout).toBe('length cannot exceed 2147483136, given 3G\n');
    const bad = await io(t, 'r -x 0 1');
    expect(bad.stderr).toBe("r: invalid option -- 'x'\n");
    expect(bad.stdout).toBe(usage);
    expect(bad.failed).toBe(true);
    // An option's own failure wins over a bad option later on the line.
    const p = await io(t, 'read -P zz -x 0 1');
    expect(p.stdout).toBe('zz is not a valid pattern byte\n');
    expect(p.stderr).toBe('');
    expect((await io(t, 'read 0 1 2')).stdout).toBe(usage);
    expect((await io(t, 'read -lq 0 1')).stdout).toBe('Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- q\n');
    expect((await io(t, 'read 0 -1')).stderr).toBe("read: invalid option -- '1'\n");
  });

  it('prints -v dumps and -C lines, and nothing with -q', async () => {
    const t = new MemTarget(4096);
    t.data.set([0x61, 0x62], 16);
    const v = await io(t, 'read -v 8 12');
    expect(v.stdout).toBe('00000008:  00 00 00 00 00 00 00 00 61 62 00 00  ........ab..\nread 12/12 bytes at offset 8\n12 bytes, 1 ops; 00.00 sec (5.859 KiB/sec and 500.0000 ops/sec)\n');
    expect((await io(t, 'read -C 0 512')).stdout).toBe('512,1,0:00:00.00,256000.000,500.000\n');
    expect((await io(t, 'read 0 512 -vq')).text).toBe('');
  });

  it('refuses requests outside the image with EIO, but allows an empty one at the end', async () => {
    const t = new MemTarget(4096);
    expect((await io(t, 'read 4096 1')).stdout).toBe('read failed: Input/output error\n');
    expect((await io(t, 'read 4095 2')).stdout).toBe('read failed: Input/output error\n');
    expect((await io(t, 'read 4097 0')).stdout).toBe('read failed: Input/output error\n');
    expect((await io(t, 'read 7E 1')).stdout).toBe('read failed: Input/output error\n');
    expect((await io(t, 'write 4096 1')).stdout).toBe('write failed: Input/output error\n');
    expect((await io(t, 'discard 4000 100')).stdout).toBe('discard failed: Input/output error\n');
    const empty = await io(t, 'read 4096 0');
    expect(empty.failed).toBe(false);
    expect(empty.stdout).toBe('read 0/0 bytes at offset 4096\n0 bytes, 1 ops; 00.00 sec (0 bytes/sec and 500.0000 ops/sec)\n');
    expect(t.calls).toEqual([]);
  });

  it('reports size errors and the hex-with-unit warning', async () => {
    const t = new MemTarget(1 << 20);
    expect((await io(t, 'read 9E 1')).stdout).toBe('Parsing error: argument too large -- 9E\n');
    expect((await io(t, 'read 1.5 1')).stdout).toBe('Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- 1.5\n');
    const hex = await io(t, 'read -q 0x1k 1', { errorPrefix: 'blockemu io: ' });
    expect(hex.failed).toBe(false);
    expect(hex.stderr).toBe('blockemu io: warning: Using a multiplier suffix on hex numbers is deprecated: 0x1k\n');
    expect((await io(t, 'write 0 3G')).stdout).toBe('length cannot exceed 2147483136 without -n, given 3G\n');
    expect((await io(t, 'discard 0 3G')).stdout).toBe('length cannot exceed 2147483136, given 3G\n');
  });

  it('checks write flag combinations in qemu-io order', async () => {
    const t = new MemTarget(4096);
    const cases: Array<[string, string]> = [
      ['write -u 0 1', '-u requires -z to be specified'],
      ['write -n 0 1', '-n requires -z to be specified'],
      ['write -z -P 1 0 1', 'Only one of -z, -P, and -s can be specified at the same time'],
      ['write -P 1 -s f 0 1', 'Only one of -z, -P, and -s can be specified at the same time'],
      ['write -b -z -u -n 0 512', '-b and -z cannot be specified at the same time'],
      ['write -f -c -u 0 512', '-f and -b or -c cannot be specified at the same time'],
      ['write -c 1 512', "1 is not a sector-aligned value for 'offset'"],
      ['write -c 0 511', "511 is not a sector-aligned value for 'count'"],
      ['write -b 0 512', 'write failed: Operation not supported'],
      ['write -P 256 0 1', '256 is not a valid pattern byte'],
    ];
    for (const [line, want] of cases) {
      const r = await io(t, line);
      expect({ line, out: r.stdout, failed: r.failed }).toEqual({ line, out: `${want}\n`, failed: true });
    }
    expect((await io(t, 'read -b 1 512')).stdout).toBe("1 is not a sector-aligned value for 'offset'\n");
    expect((await io(t, 'read -b 0 512')).stdout).toBe('read failed: Operation not supported\n');
    expect(t.calls).toEqual([]);
  });

  it('passes may-unmap only with -u and an unmapping node; -f asks the device for force unit access', async () => {
    const t = new MemTarget(1 << 16);
    t.data.fill(9);
    await io(t, 'write -z 0 4k');
    await io(t, 'write -zu 4k 4k');
    await io(t, 'write -z -u 8k 4k', { unmap: false });
    expect(t.calls).toEqual(['zeroes mayUnmap=false', 'zeroes mayUnmap=true', 'zeroes mayUnmap=false']);
    expect(t.data.subarray(0, 12288).every((b) => b === 0)).toBe(true);
    expect(t.data[12288]).toBe(9);
    t.calls.length = 0;
    await io(t, 'write -f 0 1');
    await io(t, 'write -f -z 0 1');
    // The device flushes as part of the request (QEMU's FUA emulation), not the interpreter after it.
    expect(t.calls).toEqual(['write fua', 'zeroes mayUnmap=false fua']);
  });

  it('discards only on an unmapping node, reporting success either way', async () => {
    const t = new MemTarget(1 << 16);
    const r = await io(t, 'discard 512 1k');
    expect(r.stdout).toBe('discard 1024/1024 bytes at offset 512\n1 KiB, 1 ops; 00.00 sec (500 KiB/sec and 500.0000 ops/sec)\n');
    expect(t.calls).toEqual(['discard 512 1024']);
    const ignored = await io(t, 'discard -q 0 4k', { unmap: false });
    expect(ignored.failed).toBe(false);
    expect(ignored.text).toBe('');
    expect(t.calls).toEqual(['discard 512 1024']);
  });

  it('writes from a pattern file, repeating it, and reports file errors like perror', async () => {
    await withTempDir(async (dir) => {
      const src = join(dir, 'src');
      await writeFile(src, 'abc');
      const t = new MemTarget(4096);
      expect((await io(t, `write -q -s ${src} 10 8`)).failed).toBe(false);
      expect(Buffer.from(t.data.subarray(10, 18)).toString()).toBe('abcabcab');
      await writeFile(join(dir, 'empty'), '');
      const empty = await io(t, `write -s ${join(dir, 'empty')} 0 8`);
      expect(empty.stderr).toBe(`${join(dir, 'empty')}: file is empty\n`);
      expect(empty.failed).toBe(true);
      const missing = await io(t, `write -s ${join(dir, 'nope')} 0 8`);
      expect(missing.stderr).toBe(`${join(dir, 'nope')}: No such file or directory\n`);
    });
  });

  it('writes compressed cluster by cluster, or fails as QEMU does', async () => {
    const t = new MemTarget(40960, false, 8192);
    expect((await io(t, 'write -c 0 8k')).stdout).toBe('write failed: Operation not supported\n');
    const got: Array<[number, number, number]> = [];
    t.writeCompressed = async (off, data) => void got.push([off, data.length, data[0]!]);
    expect((await io(t, 'write -q -c -P 3 8k 16k')).failed).toBe(false);
    expect(got).toEqual([
      [8192, 8192, 3],
      [16384, 8192, 3],
    ]);
    expect((await io(t, 'write -c 512 512')).stdout).toBe('write failed: Invalid argument\n');
    expect((await io(t, 'write -c 0 4k')).stdout).toBe('write failed: Invalid argument\n');
    // A partial cluster is fine at the end of the image.
    expect((await io(t, 'write -q -c 32k 8k')).failed).toBe(false);
  });

  it('turns errors from the image into qemu-io messages, and rethrows bugs', async () => {
    const t = new MemTarget(4096);
    t.fail = { op: 'read', err: new BlockError('IO', 'disk gone', { errno: 'ENOSPC' }) };
    expect((await io(t, 'read 0 1')).stdout).toBe('read failed: No space left on device\n');
    t.fail = { op: 'write', err: new BlockError('INVALID_IMAGE', 'corrupt') };
    expect((await io(t, 'write 0 1')).stdout).toBe('write failed: Input/output error\n');
    t.fail = { op: 'flush', err: new BlockError('IO', 'x', { errno: 'EIO' }) };
    const f = await io(t, 'flush');
    expect(f.failed).toBe(true);
    expect(f.text).toBe('');
    t.fail = { op: 'status', err: new BlockError('IO', 'x', { errno: 'EIO' }) };
    expect((await io(t, 'map', { errorPrefix: 'p: ' })).stderr).toBe('p: Failed to get allocation status: Input/output error\n');
    t.fail = { op: 'read', err: new TypeError('a bug') };
    await expect(io(t, 'read 0 1')).rejects.toThrow('a bug');
  });

  it('maps maximal runs of allocation and counts allocated bytes', async () => {
    const t = new MemTarget(1 << 20);
    await io(t, 'write 0 192k');
    await io(t, 'write -z -u 64k 64k'); // deallocates in this target
    await io(t, 'write 1000k 10');
    const m = await io(t, 'map');
    expect(m.stdout).toBe(
      '64 KiB (0x10000) bytes     allocated at offset 0 bytes (0x0)\n' +
        '64 KiB (0x10000) bytes not allocated at offset 64 KiB (0x10000)\n' +
        '64 KiB (0x10000) bytes     allocated at offset 128 KiB (0x20000)\n' +
        '808 KiB (0xca000) bytes not allocated at offset 192 KiB (0x30000)\n' +
        '4 KiB (0x1000) bytes     allocated at offset 1000 KiB (0xfa000)\n' +
        '20 KiB (0x5000) bytes not allocated at offset 1004 KiB (0xfb000)\n',
    );
    expect((await io(t, 'alloc 0 1M')).stdout).toBe('135168/1048576 bytes allocated at offset 0 bytes\n');
    expect((await io(t, 'alloc 100')).stdout).toBe('512/512 bytes allocated at offset 100 bytes\n');
    expect((await io(t, 'alloc 1000k 1M')).stdout).toBe('4096/24576 bytes allocated at offset 1000 KiB\n');
    expect((await io(t, 'alloc 1M')).stdout).toBe('0/0 bytes allocated at offset 1 MiB\n');
    expect((await io(t, 'alloc 7E')).stdout).toBe('0/0 bytes allocated at offset 7 EiB\n');
    expect((await io(t, 'alloc x')).stdout).toBe('Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- x\n');
    expect((await io(new MemTarget(0), 'map')).text).toBe('');
  });

  it('treats runs from a backing file as not allocated here', async () => {
    const t = new MemTarget(8192);
    t.blockStatus = async (offset, length) => ({ length: Math.min(length, 8192 - offset), allocated: true, depth: 1 });
    expect((await io(t, 'map')).stdout).toBe('8 KiB (0x2000) bytes not allocated at offset 0 bytes (0x0)\n');
  });

  it('prints the length', async () => {
    expect((await io(new MemTarget(1000 << 10), 'length')).stdout).toBe('1000 KiB\n');
    expect((await io(new MemTarget(1536), 'l')).stdout).toBe('1.500 KiB\n');
  });
});

describe('the interpreter', () => {
  it('splits on spaces only, ignores empty lines, and finds commands by alias', async () => {
    const t = new MemTarget(4096);
    expect((await io(t, '')).failed).toBe(false);
    expect((await io(t, '    ')).text).toBe('');
    expect((await io(t, '  w  -q   0   1 ')).failed).toBe(false);
    expect(t.data[0]).toBe(0xcd);
  });

  it('reports unknown commands, argument counts and a missing image on stderr', async () => {
    const t = new MemTarget(4096);
    expect((await io(t, 'bogus 1')).stderr).toBe('command "bogus" not found\n');
    expect((await io(t, 'read')).stderr).toBe('bad argument count 0 to read, expected at least 2 arguments\n');
    expect((await io(t, 'r -P')).stderr).toBe('bad argument count 1 to r, expected at least 2 arguments\n');
    expect((await io(t, 'flush 1')).stderr).toBe('bad argument count 1 to flush, expected 0 arguments\n');
    expect((await io(t, 'alloc 1 2 3')).stderr).toBe('bad argument count 3 to alloc, expected between 1 and 2 arguments\n');
    const none = await io(undefined, 'read 0 1');
    expect(none.stderr).toBe("no file open, try 'help open'\n");
    expect(none.failed).toBe(true);
    expect((await io(undefined, 'help flush')).stdout).toBe('flush -- flush all in-core file state to disk\n');
  });

  it('refuses writing commands on a read-only node before parsing them', async () => {
    const t = new MemTarget(4096, true);
    for (const line of ['write 0 1', 'write -x 0 1', 'discard 0 1', 'write -z 0 512']) {
      const r = await io(t, line, { errorPrefix: 'blockemu io: ' });
      expect(r.stderr).toBe('blockemu io: Block node is read-only\n');
      expect(r.failed).toBe(true);
    }
    // The argument count is checked first.
    expect((await io(t, 'write')).stderr).toBe('bad argument count 0 to write, expected at least 2 arguments\n');
    expect((await io(t, 'read -q 0 1')).failed).toBe(false);
    expect((await io(t, 'flush')).failed).toBe(false);
    expect(t.calls).toEqual(['read', 'flush']);
  });

  it('prints help like qemu-io', async () => {
    const all = await io(undefined, 'help');
    expect(all.stdout.split('\n').slice(0, 5)).toEqual([
      'aio_flush -- completes all outstanding aio requests',
      'aio_read [-Ciqv] [-P pattern] off len [len..] -- asynchronously reads a number of bytes',
      'aio_write [-Cfiquz] [-P pattern] off len [len..] -- asynchronously writes a number of bytes',
      'alloc offset [count] -- checks if offset is allocated in the file',
      'break event tag -- sets a breakpoint on event and tags the stopped request as tag',
    ]);
    expect(all.stdout).toContain('\ninfo -- prints information about the current file\nlength');
    expect(all.stdout).toContain('\nreopen [(-r|-w)] [-c cache] [-o options] -- reopens an image with new options\n');
    expect(all.stdout).toContain('map  -- prints the allocated areas of a file\n');
    expect(all.stdout.endsWith("\nUse 'help commandname' for extended help.\n")).toBe(true);
    const d = await io(undefined, '? d');
    expect(d.stdout).toBe(
      'd [-Cq] off len -- discards a number of bytes at a specified offset\n\n discards a range of bytes from the given offset\n\n' +
        " Example:\n 'discard 512 1k' - discards 1 kilobyte from 512 bytes into the file\n\n Discards a segment of the currently open file.\n" +
        ' -C, -- report statistics in a machine parsable format\n -q, -- quiet mode, do not show I/O statistics\n\n',
    );
    const missing = await io(undefined, 'help bogus');
    expect(missing.stdout).toBe('command bogus not found\n');
    expect(missing.failed).toBe(true);
  });
});

describe('on a raw image file', () => {
  it('writes, reads back, maps and survives reopening', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'a.raw');
      await RawImage.create(path, 1 << 20);
      const img = await openImage(path, { format: 'raw' });
      try {
        expect((await io(img, 'write -q -P 0x5a 1000 3000')).failed).toBe(false);
        expect((await io(img, 'write -q -z 2000 10')).failed).toBe(false);
        expect((await io(img, 'map')).stdout).toBe('1 MiB (0x100000) bytes     allocated at offset 0 bytes (0x0)\n');
        expect((await io(img, 'flush')).failed).toBe(false);
      } finally {
        await img.close();
      }
      const again = await openImage(path, { format: 'raw', readOnly: true });
      try {
        expect((await io(again, 'read -q -P 0x5a 1000 1000')).failed).toBe(false);
        expect((await io(again, 'read -q -P 0 2000 10')).failed).toBe(false);
        expect((await io(again, 'read -q -P 0x5a 2010 1990')).failed).toBe(false);
        expect((await io(again, 'read -q -P 0 4000 1k')).failed).toBe(false);
        expect((await io(again, 'write 0 1', { errorPrefix: 'x: ' })).stderr).toBe('x: Block node is read-only\n');
      } finally {
        await again.close();
      }
    });
  });
});

describe('asynchronous requests (aio_read, aio_write, aio_flush)', () => {
  /** A target whose reads and writes wait until released, to hold requests in flight. */
  class GatedTarget extends MemTarget {
    private gates: Array<() => void> = [];
    private wait(): Promise<void> {
      return new Promise((r) => this.gates.push(r));
    }
    release(): void {
      for (const g of this.gates.splice(0)) g();
    }
    override async read(offset: number, length: number): Promise<Uint8Array> {
      await this.wait();
      return super.read(offset, length);
    }
    override async write(offset: number, data: Uint8Array, opts?: { fua?: boolean }): Promise<void> {
      await this.wait();
      return super.write(offset, data, opts);
    }
  }

  it('a session issues without waiting, reports at completion and drains at aio_flush', async () => {
    const t = new GatedTarget(1 << 20);
    const done: string[] = [];
    const s = new QemuIoSession(t, { now: fakeClock() }, (chunks) => done.push(chunks.map((c) => c.text).join('')));
    const issued = await s.run('aio_write -P 7 0 4k');
    expect(issued.text).toBe('');
    expect(issued.failed).toBe(false);
    expect(done).toEqual([]);
    const flush = s.run('aio_flush');
    t.release();
    expect((await flush).text).toBe('');
    expect(done).toEqual(['wrote 4096/4096 bytes at offset 0\n4 KiB, 1 ops; 00.00 sec (1.953 MiB/sec and 500.0000 ops/sec)\n']);
    expect(t.data[4095]).toBe(7);
  });

  it('completion failures and pattern mismatches do not fail the command', async () => {
    const t = new MemTarget(1 << 20);
    const lines: string[] = [];
    const s = new QemuIoSession(t, { now: fakeClock() }, (chunks) => lines.push(...chunks.map((c) => c.text)));
    expect((await s.run('aio_read -P 1 0 512')).failed).toBe(false);
    expect((await s.run('aio_write 1M 1')).failed).toBe(false);
    await s.drain();
    expect(lines.join('')).toBe(
      'Pattern verification failed at offset 0, 512 bytes\nread 512/512 bytes at offset 0\n512 bytes, 1 ops; 00.00 sec (250 KiB/sec and 500.0000 ops/sec)\n' +
        'aio_write failed: Input/output error\n',
    );
  });

  it('a single command (the monitor) returns only after its request completed', async () => {
    const t = new MemTarget(1 << 20);
    const r = await io(t, 'aio_write -q -P 5 0 1k');
    expect(r.text).toBe('');
    expect(t.data[1023]).toBe(5);
    expect((await io(t, 'aio_read -P 5 0 512 512')).text).toBe('read 1024/1024 bytes at offset 0\n1 KiB, 1 ops; 00.00 sec (500 KiB/sec and 500.0000 ops/sec)\n');
  });

  it('readv and writev sum their lengths into one request', async () => {
    const t = new MemTarget(1 << 20);
    expect((await io(t, 'writev -P 9 512 512 1k')).text).toBe('wrote 1536/1536 bytes at offset 512\n1.500 KiB, 1 ops; 00.00 sec (750 KiB/sec and 500.0000 ops/sec)\n');
    expect(t.calls).toEqual(['write']);
    const bad = await io(t, 'readv -P 9 0 1k 1k');
    expect(bad.failed).toBe(true);
    expect(bad.text).toMatch(/^Pattern verification failed at offset 0, 2048 bytes\nread 2048\/2048/);
    expect((await io(t, 'readv 0 2G 2G')).text).toBe("Argument '2G' exceeds maximum size 2147483136\n");
    expect((await io(t, 'readv 0 1G 1G 1G')).text).toBe('The total number of bytes exceed the maximum size 2147483136\n');
  });
});

describe('the tool-only commands (close, open, sigraise, abort)', () => {
  it('the monitor has none of them', async () => {
    const t = new MemTarget(1 << 20);
    for (const c of ['close', 'open x', 'sigraise 9', 'abort']) expect((await io(t, c)).stderr).toBe(`command "${c.split(' ')[0]}" not found\n`);
  });

  it('close drains outstanding requests first, then leaves no file open; open takes one again', async () => {
    const t = new MemTarget(1 << 20);
    const events: string[] = [];
    const raised: number[] = [];
    const s = new QemuIoSession(t, { now: fakeClock() }, (chunks) => events.push(`done: ${chunks[0]!.text.split('\n')[0]}`), {
      closeImage: async () => void events.push('closed'),
      raise: async (sig) => void raised.push(sig),
      openImage: async (req) => {
        events.push(`open ${req.flags.join(' ')} ${req.path}`);
        return t;
      },
    });
    await s.run('aio_write 0 1k');
    expect((await s.run('close')).failed).toBe(false);
    expect(events).toEqual(['done: wrote 1024/1024 bytes at offset 0', 'closed']);
    expect((await s.run('read 0 1')).stderr).toBe("no file open, try 'help open'\n");
    expect((await s.run('open -r -t none img')).failed).toBe(false);
    expect(events.at(-1)).toBe('open -r -t none img');
    expect((await s.run('open img')).stderr).toBe("file open already, try 'help close'\n");
    expect((await s.run('sigraise 66')).stdout).toBe("signal argument '66' is too large to be a valid signal\n");
    await s.run('sigraise 15');
    await s.run('abort');
    expect(raised).toEqual([15, 6]);
  });
});
