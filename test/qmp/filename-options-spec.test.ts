/**
 * filenameOptionsSpec: a file name and flat QemuOpts-style options (what
 * qemu-io's blk_new_open and -drive hand bdrv_open) as one BlockdevSpec —
 * the file name placed where bdrv_open puts it (the protocol node, below a
 * format the options name, a blkdebug's image), sizes with suffixes for
 * the drivers that read them as QemuOpts sizes, numbered levels as lists,
 * and bdrv_open's words for what it refuses.
 */
import { describe, expect, it } from 'vitest';
import { filenameOptionsSpec } from '../../src/qmp/commands/drive.js';

const spec = (file: string | undefined, opts: Record<string, string>) => filenameOptionsSpec(file, new Map(Object.entries(opts)), () => undefined);

describe('filenameOptionsSpec', () => {
  it('puts a blkdebug file name under the format and a plain name under blkdebug as its image', async () => {
    expect(await spec('blkdebug::img', { driver: 'qcow2', 'file.align': '4k' })).toMatchObject({
      driver: 'qcow2',
      file: { driver: 'blkdebug', align: 4096, image: { driver: 'file', filename: 'img' } },
    });
    expect(await spec('blkdebug::img', { driver: 'blkdebug', 'image.driver': 'qcow2' })).toMatchObject({
      driver: 'blkdebug',
      image: { driver: 'qcow2', file: { driver: 'file', filename: 'img' } },
    });
    expect(await spec('img', { driver: 'blkdebug', config: 'c.conf', 'image.driver': 'qcow2' })).toMatchObject({
      driver: 'blkdebug',
      config: 'c.conf',
      image: { driver: 'qcow2', file: { driver: 'file', filename: 'img' } },
    });
    expect(await spec('img', { driver: 'copy-on-read', 'file.driver': 'blkdebug', 'file.image.driver': 'qcow2' })).toMatchObject({
      driver: 'copy-on-read',
      file: { driver: 'blkdebug', image: { driver: 'qcow2', file: { driver: 'file', filename: 'img' } } },
    });
  });

  it('reads numbered levels as lists and a child given by file name alone as a file node', async () => {
    expect(await spec(undefined, { driver: 'qcow2', 'file.driver': 'blkdebug', 'file.image.filename': 'img', 'file.inject-error.0.event': 'write_aio' })).toMatchObject({
      file: { driver: 'blkdebug', image: { driver: 'file', filename: 'img' }, 'inject-error': [{ event: 'write_aio' }] },
    });
  });

  it("refuses in bdrv_open's words", async () => {
    await expect(spec(undefined, { driver: 'qcow3', 'file.filename': 'img' })).rejects.toThrow("Unknown driver 'qcow3'");
    await expect(spec(undefined, { driver: 'qcow2' })).rejects.toThrow('A block device must be specified for "file"');
    await expect(spec(undefined, { driver: 'qcow2', 'file.filename': 'img', bogus: '1' })).rejects.toThrow("Block format 'qcow2' does not support the option 'bogus'");
    await expect(spec(undefined, { 'read-only': 'on' })).rejects.toThrow('Must specify either driver or file');
  });

  it("takes QEMU's single-quoted JSON in json: names", async () => {
    expect(await spec("json:{'driver': 'null-co', 'size': 65536}", { driver: 'null-co' })).toMatchObject({ driver: 'null-co', size: 65536 });
  });
});
