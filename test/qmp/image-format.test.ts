/**
 * Format names in commands that create or open an image file themselves,
 * on both daemons: a name no QEMU driver has is an "Unknown file format"
 * where the image is created (bdrv_img_create) and an "Unknown driver"
 * where it is opened (bdrv_open), in blockdev-add a QAPI enum error; a
 * format without backing files refuses one when it is created, and an
 * existing one is opened before it is refused as an overlay; a driver
 * with no create function refuses to create one.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Daemon, OURS, playQmp } from '../helpers/export-daemon.js';
import { qemu, withTempDir } from '../helpers/qemu.js';

async function session(which: Daemon): Promise<unknown[]> {
  return withTempDir(async (dir) => {
    await writeFile(join(dir, 's.raw'), new Uint8Array(1 << 20).fill(1));
    for (const f of ['e1.raw', 'e2.raw', 'e3.raw', 'o1.raw', 'o2.raw']) await writeFile(join(dir, f), new Uint8Array(1 << 20));
    const t = (name: string) => join(dir, name);
    let n = 0;
    const backup = (args: Record<string, unknown>): [string, Record<string, unknown>] => ['drive-backup', { 'job-id': `j${n++}`, device: 'src', sync: 'full', ...args }];
    const snap = (args: Record<string, unknown>): [string, Record<string, unknown>] => ['blockdev-snapshot-sync', { 'node-name': 'src', 'snapshot-node-name': 'ov', ...args }];
    return playQmp(which, { dir, blockdevs: [`driver=file,node-name=sf,filename=${t('s.raw')}`, 'driver=raw,node-name=src,file=sf'] }, [
      ['blockdev-add', { driver: 'x', 'node-name': 'n' }],
      backup({ target: t('n1.img'), format: 'x' }),
      backup({ target: t('e1.raw'), format: 'x', mode: 'existing' }),
      backup({ target: t('missing.img'), format: 'x', mode: 'existing' }),
      backup({ target: t('n2.img'), format: 'raw', sync: 'none' }),
      backup({ target: t('n3.img'), format: 'file', sync: 'none' }),
      backup({ target: t('n4.img'), format: 'file' }),
      backup({ target: t('e2.raw'), format: 'file', mode: 'existing' }),
      ['transaction', { actions: [{ type: 'drive-backup', data: { 'job-id': 'tx', device: 'src', sync: 'full', target: t('n5.img'), format: 'x' } }] }],
      // A driver QEMU has that creates nothing (a filter, blkdebug): QEMU's refusal, not blockemu's.
      backup({ target: t('n10.img'), format: 'blkdebug' }),
      backup({ target: t('n11.img'), format: 'throttle' }),
      snap({ 'snapshot-file': t('n6.img'), format: 'x' }),
      snap({ 'snapshot-file': t('o1.raw'), format: 'x', mode: 'existing' }),
      snap({ 'snapshot-file': t('n7.img'), format: 'raw' }),
      snap({ 'snapshot-file': t('n8.img'), format: 'file' }),
      snap({ 'snapshot-file': t('o1.raw'), format: 'raw', mode: 'existing' }),
      snap({ 'snapshot-file': t('o2.raw'), format: 'file', mode: 'existing' }),
      snap({ 'snapshot-file': t('missing.img'), format: 'raw', mode: 'existing' }),
      ['transaction', { actions: [{ type: 'blockdev-snapshot-sync', data: { 'node-name': 'src', 'snapshot-node-name': 'ov', 'snapshot-file': t('n9.img'), format: 'x' } }] }],
      ['query-named-block-nodes', { flat: true }],
    ]);
  });
}

/** The node list without what the running backups put in it (their filters and targets come and go). */
const nodeNames = (out: unknown[]) => {
  const last = out[out.length - 1] as { return: Array<{ 'node-name': string }> };
  return [...out.slice(0, -1), last.return.map((x) => x['node-name']).filter((x) => !x.startsWith('#')).sort()];
};

describe.skipIf(!qemu.available || !qemu.storageDaemon)('format names in drive-backup, blockdev-snapshot-sync and blockdev-add', () => {
  it("are refused in QEMU's words for each path", async () => {
    const theirs = nodeNames(await session('qsd'));
    expect(JSON.stringify(theirs)).toContain("Unknown file format 'x'");
    expect(nodeNames(await session(OURS))).toEqual(theirs);
  }, 60_000);
});
