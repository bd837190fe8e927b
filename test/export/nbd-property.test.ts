/**
 * Property: random batches of NBD requests, sent pipelined (up to 16 in
 * flight, replies taken in whatever order the server sends them), against
 * a byte model of the export. Within a batch no write overlaps another
 * request, so the outcome is defined whatever order the server runs them
 * in. Every request gets exactly one reply, with its own cookie; every
 * read's chunks cover its range exactly and hold the model's bytes (holes
 * only where the model is zero); afterwards the image equals the model
 * (qemu-img compare) and is clean (qemu-img check). NBD_RUNS=n for more.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { startExportDaemon } from '../helpers/export-daemon.js';
import { NBD, NbdWire, type WireRecord, dataSummary, infoPayload } from '../helpers/nbd-wire.js';
import { qemu, qemuImg, withTempDir } from '../helpers/qemu.js';

const SIZE = 1 << 20;
const RUNS = Number(process.env['NBD_RUNS'] ?? 6);

type Op =
  | { kind: 'read'; offset: number; length: number; df: boolean }
  | { kind: 'write'; offset: number; length: number; byte: number; fua: boolean }
  | { kind: 'zeroes'; offset: number; length: number; noHole: boolean }
  | { kind: 'trim'; offset: number; length: number };

/** Offsets and lengths around qcow2 clusters (64 KiB) and 4 KiB blocks, and odd ones. */
const range = fc
  .tuple(fc.oneof(fc.integer({ min: 0, max: SIZE - 1 }), fc.integer({ min: 0, max: 15 }).map((k) => k * 65536)), fc.oneof(fc.integer({ min: 1, max: 200_000 }), fc.constantFrom(512, 4096, 65536, 131072)))
  .map(([offset, length]) => ({ offset, length: Math.min(length, SIZE - offset) }));

const op: fc.Arbitrary<Op> = fc.oneof(
  range.chain((r) => fc.boolean().map((df) => ({ kind: 'read' as const, ...r, df }))),
  range.chain((r) => fc.tuple(fc.integer({ min: 1, max: 255 }), fc.boolean()).map(([byte, fua]) => ({ kind: 'write' as const, ...r, byte, fua }))),
  range.chain((r) => fc.boolean().map((noHole) => ({ kind: 'zeroes' as const, ...r, noHole }))),
  range.map((r) => ({ kind: 'trim' as const, ...r })),
);

const overlaps = (a: Op, b: Op) => a.offset < b.offset + b.length && b.offset < a.offset + a.length;

/** Batches of up to 16 requests where nothing overlaps a write, zero write or trim. */
const batches = fc.array(fc.array(op, { minLength: 1, maxLength: 16 }), { minLength: 1, maxLength: 12 }).map((bs) =>
  bs.map((b) => b.filter((o, i) => !b.some((p, j) => j !== i && overlaps(o, p) && (o.kind !== 'read' || p.kind !== 'read')))).filter((b) => b.length > 0),
);

async function handshake(w: NbdWire): Promise<void> {
  await w.greeting();
  w.clientFlags(NBD.FLAG_C_FIXED_NEWSTYLE | NBD.FLAG_C_NO_ZEROES);
  w.option(NBD.OPT_STRUCTURED_REPLY);
  await w.optionReplies();
  w.option(NBD.OPT_GO, infoPayload('exp', []));
  await w.optionReplies();
}

/** Checks one batch's replies against the model (before the batch's writes for reads: they do not overlap). */
function checkReplies(records: WireRecord[], sent: Map<string, Op>, model: Uint8Array): void {
  const covered = new Map<string, number>();
  const done = new Set<string>();
  for (const r of records) {
    const cookie = r['cookie'] as string;
    const o = sent.get(cookie);
    if (!o) throw new Error(`reply for a cookie never sent: ${JSON.stringify(r)}`);
    if (done.has(cookie)) throw new Error(`second reply for ${cookie}`);
    // Successes other than reads are simple replies, structured replies or not (nbd_send_generic_reply).
    if (r['step'] === 'simple-reply') {
      expect(r['error']).toBe('OK');
      expect(o.kind).not.toBe('read');
      done.add(cookie);
      continue;
    }
    if (r['step'] !== 'chunk') throw new Error(`unexpected record ${JSON.stringify(r)}`);
    expect(r['type'], JSON.stringify(r)).not.toBe('ERROR');
    if (r['type'] === 'OFFSET_DATA' || r['type'] === 'OFFSET_HOLE') {
      expect(o.kind).toBe('read');
      const at = r['offset'] as number;
      const len = r['type'] === 'OFFSET_HOLE' ? (r['holeLength'] as number) : ((r['data'] as WireRecord)['length'] as number);
      // Chunks come in order and tile the request.
      expect(at).toBe(o.offset + (covered.get(cookie) ?? 0));
      covered.set(cookie, (covered.get(cookie) ?? 0) + len);
      const want = Buffer.from(model.subarray(at, at + len));
      if (r['type'] === 'OFFSET_HOLE') expect(want.every((b) => b === 0)).toBe(true);
      else expect(r['data']).toEqual(dataSummary(want));
      if (o.kind === 'read' && o.df) expect(r['flags']).toBe(1);
    }
    if ((r['flags'] as number) & 1) {
      done.add(cookie);
      if (o.kind === 'read') expect(covered.get(cookie) ?? 0).toBe(o.length);
    }
  }
  expect(done.size).toBe(sent.size);
}

function apply(model: Uint8Array, o: Op): void {
  if (o.kind === 'write') model.fill(o.byte, o.offset, o.offset + o.length);
  else if (o.kind === 'zeroes') model.fill(0, o.offset, o.offset + o.length);
  // trim: the export's node keeps discard=ignore (QEMU's default), so the data stays.
}

describe.skipIf(!qemu.available || !qemu.storageDaemon)('NBD export: pipelined random requests against a model', () => {
  for (const format of ['qcow2', 'raw'] as const) {
    it(`${format}: every request answered once, reads equal the model, the image equals it after`, async () => {
      await fc.assert(
        fc.asyncProperty(batches, async (bs) => {
          await withTempDir(async (dir) => {
            const img = join(dir, `disk.${format}`);
            expect((await qemuImg('create', '-q', '-f', format, img, String(SIZE))).code).toBe(0);
            const d = await startExportDaemon('blockemu', {
              dir,
              blockdevs: [`driver=file,node-name=f,filename=${img}`, `driver=${format},node-name=disk,file=f`],
              nbdServer: true,
              exports: ['type=nbd,id=e0,node-name=disk,name=exp,writable=on'],
            });
            const model = new Uint8Array(SIZE);
            try {
              const w = await NbdWire.connect(d.nbdPath);
              await handshake(w);
              for (const b of bs) {
                const mark = w.transcript.length;
                const sent = new Map<string, Op>();
                for (const o of b) {
                  const cookie =
                    o.kind === 'read'
                      ? w.request(NBD.CMD_READ, { offset: o.offset, length: o.length, flags: o.df ? NBD.CMD_FLAG_DF : 0 })
                      : o.kind === 'write'
                        ? w.request(NBD.CMD_WRITE, { offset: o.offset, data: Buffer.alloc(o.length, o.byte), flags: o.fua ? NBD.CMD_FLAG_FUA : 0 })
                        : o.kind === 'zeroes'
                          ? w.request(NBD.CMD_WRITE_ZEROES, { offset: o.offset, length: o.length, flags: o.noHole ? NBD.CMD_FLAG_NO_HOLE : 0 })
                          : w.request(NBD.CMD_TRIM, { offset: o.offset, length: o.length });
                  sent.set(`0x${cookie.toString(16).padStart(16, '0')}`, o);
                }
                for (let i = 0; i < b.length; i++) await w.reply();
                expect(w.over).toBe(false);
                checkReplies(
                  w.transcript.slice(mark).filter((r) => r['step'] !== 'send-request'),
                  sent,
                  model,
                );
                for (const o of b) apply(model, o);
              }
              w.request(NBD.CMD_DISC);
              await w.close();
            } finally {
              await d.quit();
            }
            const expected = join(dir, 'model.raw');
            await writeFile(expected, model);
            const cmp = await qemuImg('compare', '-f', format, '-F', 'raw', img, expected);
            expect(cmp.stdout + cmp.stderr, 'qemu-img compare').toContain('Images are identical');
            if (format === 'qcow2') expect((await qemuImg('check', img)).code, 'qemu-img check').toBe(0);
          });
        }),
        { numRuns: RUNS, timeout: 20_000 },
      );
    }, 120_000);
  }
});
