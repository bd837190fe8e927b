import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ByteFile, DebugEvent } from '../../../src/image/byte-file.js';
import { HostFile } from '../../../src/image/file.js';
import { createImage, openImage } from '../../../src/image/open.js';
import { Qcow2Image } from '../../../src/image/qcow2/image.js';
import { withTempDir } from '../../helpers/qemu.js';

/**
 * The order of a qcow2 image's announcements and I/O on its file, as QEMU's
 * BLKDBG_EVENT call sites give it (block/qcow2*.c). The differential test
 * (test/blockdev/qcow2-blkdebug-events.test.ts) shows what these orders do
 * under blkdebug rules; this one pins the orders themselves, without QEMU.
 */

/** A host file that logs every announcement and every request, in order. */
class Recorder implements ByteFile {
  readonly log: string[] = [];
  constructor(private readonly f: HostFile) {}
  get path(): string {
    return this.f.path;
  }
  get readOnly(): boolean {
    return this.f.readOnly;
  }
  event(e: DebugEvent): void {
    this.log.push(e);
  }
  read(offset: number, length: number): Promise<Uint8Array> {
    this.log.push(`READ ${offset}`);
    return this.f.read(offset, length);
  }
  readInto(buf: Uint8Array, offset: number): Promise<void> {
    this.log.push(`READ ${offset}`);
    return this.f.readInto(buf, offset);
  }
  write(offset: number, data: Uint8Array): Promise<void> {
    this.log.push(`WRITE ${offset}`);
    return this.f.write(offset, data);
  }
  writev(offset: number, bufs: Uint8Array[]): Promise<void> {
    this.log.push(`WRITE ${offset}`);
    return this.f.writev(offset, bufs);
  }
  size(): Promise<number> {
    return this.f.size();
  }
  allocatedBytes(): Promise<number> {
    return this.f.allocatedBytes();
  }
  truncate(length: number): Promise<void> {
    return this.f.truncate(length);
  }
  flush(): Promise<void> {
    this.log.push('FLUSH');
    return this.f.flush();
  }
  close(): Promise<void> {
    return this.f.close();
  }
  /** The log since the last take. */
  take(): string[] {
    return this.log.splice(0);
  }
}

const K = 1024;
const CS = 64 * K;

async function open(path: string, backing = false): Promise<{ img: Qcow2Image; rec: Recorder }> {
  const rec = new Recorder(await HostFile.open(path));
  const img = await Qcow2Image.openFile(rec, { openBacking: backing, openBackingImage: (p, format, depth) => openImage(p, { format, readOnly: true, depth }) });
  return { img, rec };
}

describe('qcow2 announces its I/O with QEMU\'s blkdebug events, in QEMU\'s order', () => {
  it('opening reads the refcount table after reftable_load', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'a.qcow2');
      await createImage(path, { format: 'qcow2', size: 64 << 20 });
      const { img, rec } = await open(path);
      // Header (twice: its first bytes, then its cluster), L1 table at 3 clusters, refcount table at 1.
      expect(rec.take()).toEqual(['READ 0', 'READ 0', `READ ${3 * CS}`, 'reftable_load', `READ ${CS}`]);
      await img.close();
    });
  });

  it('a first write: l2_allocate (writing the refcount block), the data cluster, write_aio; the flush writes refcounts, the L2 table and the L1 entry', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'a.qcow2');
      await createImage(path, { format: 'qcow2', size: 64 << 20 });
      const { img, rec } = await open(path);
      rec.take();
      await img.write(0, new Uint8Array(CS).fill(1));
      expect(rec.take()).toEqual([
        // l2_allocate: qcow2_alloc_clusters (cluster_alloc; update_refcount: refblock_alloc, refblock_load), the table, its L1 entry.
        'cluster_alloc',
        `READ ${2 * CS}`, // the refcount block, first needed here (QEMU reads it in alloc_clusters_noref too, without an event)
        'refblock_alloc',
        'refblock_load',
        // qcow2_cache_flush of the refcount block cache (without its flush to disk here).
        'refblock_update_part',
        `WRITE ${2 * CS}`,
        'l2_alloc_write',
        'l1_update',
        // The data cluster: qcow2_alloc_clusters again, then the data.
        'cluster_alloc',
        'refblock_alloc',
        'refblock_load',
        'write_aio',
        `WRITE ${5 * CS}`,
      ]);
      await img.flush();
      expect(rec.take()).toEqual(['refblock_update_part', `WRITE ${2 * CS}`, 'FLUSH', 'l2_update', `WRITE ${4 * CS}`, 'FLUSH', `WRITE ${3 * CS}`, 'FLUSH']);
      // Nothing left: a flush flushes once, announcing nothing.
      await img.flush();
      expect(rec.take()).toEqual(['FLUSH']);
      await img.close();
    });
  });

  it('reads: l2_load only when the table comes from disk, read_aio per data run, nothing for zeroes', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'a.qcow2');
      await createImage(path, { format: 'qcow2', size: 64 << 20 });
      const w = await openImage(path);
      await w.write(0, new Uint8Array(CS).fill(1));
      await w.writeZeroes(CS, CS);
      await w.close();
      const { img, rec } = await open(path);
      rec.take();
      const buf = new Uint8Array(2 * CS);
      await img.readInto(buf, 0);
      expect(rec.take()).toEqual(['l2_load', `READ ${4 * CS}`, 'read_aio', `READ ${5 * CS}`]);
      await img.readInto(buf, 0);
      expect(rec.take()).toEqual(['read_aio', `READ ${5 * CS}`]);
      await img.close();
    });
  });

  it('partial writes: cluster_alloc_space over zeroes; cow_read, write_aio, cow_write over a backing file', async () => {
    await withTempDir(async (dir) => {
      const base = join(dir, 'base.qcow2');
      await createImage(base, { format: 'qcow2', size: 64 << 20 });
      const b = await openImage(base);
      await b.write(0, new Uint8Array(CS).fill(7));
      await b.close();
      const path = join(dir, 'top.qcow2');
      await createImage(path, { format: 'qcow2', backingFile: base, backingFormat: 'qcow2' });
      const { img, rec } = await open(path, true);
      rec.take();
      // Over the backing file's data: head and tail read through it, once (at most 16 KiB of data between them).
      await img.write(4 * K, new Uint8Array(4 * K).fill(2));
      const cow = rec.take();
      expect(cow.slice(cow.indexOf('cow_read'))).toEqual(['cow_read', 'read_backing_aio', 'write_aio', 'cow_write', `WRITE ${5 * CS}`]);
      // More than 16 KiB between head and tail: QEMU reads them apart (perform_cow), so two cow_read.
      await img.write(CS + 4 * K, new Uint8Array(CS - 8 * K).fill(2));
      const apart = rec.take();
      expect(apart.slice(apart.indexOf('cow_read'))).toEqual(['cow_read', 'read_backing_aio', 'cow_read', 'write_aio', 'cow_write', `WRITE ${6 * CS}`]);
      await img.close();

      const plain = join(dir, 'plain.qcow2');
      await createImage(plain, { format: 'qcow2', size: 64 << 20 });
      const p = await open(plain);
      p.rec.take();
      await p.img.write(4 * K, new Uint8Array(4 * K).fill(1));
      const zero = p.rec.take();
      expect(zero.slice(zero.indexOf('write_aio') - 1)).toEqual(['cluster_alloc_space', 'write_aio', `WRITE ${5 * CS}`]);
      await p.img.close();
    });
  });

  it('compressed clusters: cluster_alloc_bytes, l2_update_compressed, write_compressed; read_compressed; cluster_free when replaced', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'a.qcow2');
      await createImage(path, { format: 'qcow2', size: 64 << 20 });
      const { img, rec } = await open(path);
      await img.write(CS, new Uint8Array(CS).fill(3)); // an L2 table exists from here on
      rec.take();
      await img.writeCompressed(0, new Uint8Array(CS).fill(1));
      // No cluster_alloc: qcow2_alloc_bytes takes its cluster without qcow2_alloc_clusters.
      expect(rec.take().filter((e) => !e.startsWith('refblock_'))).toEqual(['cluster_alloc_bytes', 'l2_update_compressed', 'write_compressed', `WRITE ${6 * CS}`]);
      await img.readInto(new Uint8Array(CS), 0);
      expect(rec.take()).toEqual(['read_compressed', `READ ${6 * CS}`]);
      await img.write(0, new Uint8Array(CS).fill(2));
      expect(rec.take()).toContain('cluster_free');
      await img.close();
    });
  });

  it('zeroes over zeroes change no table: no l2_update (iotest 179)', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'a.qcow2');
      await createImage(path, { format: 'qcow2', size: 64 << 20 });
      const { img, rec } = await open(path);
      await img.writeZeroes(0, 4 * CS);
      await img.flush();
      rec.take();
      await img.writeZeroes(0, 4 * CS);
      await img.flush();
      expect(rec.take()).toEqual(['FLUSH']);
      await img.close();
    });
  });
});
