import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileNode } from '../../src/blockdev/drivers/file.js';
import { CreateJob, type CreateSpec } from '../../src/jobs/create.js';
import type { JobListener } from '../../src/jobs/job.js';
import { qemu, qemuImg, withTempDir } from '../helpers/qemu.js';

const MiB = 1 << 20;

function listener(log: string[]): JobListener {
  return {
    statusChanged: (j) => log.push(j.status),
    pending: () => log.push('PENDING'),
    finished: (j) => log.push(`finished${j.error ? `(${j.error})` : ''}`),
    removed: () => log.push('removed'),
  };
}

async function run(spec: CreateSpec): Promise<{ job: CreateJob; log: string[] }> {
  const log: string[] = [];
  const job = new CreateJob('c', listener(log), spec);
  job.start();
  await job.concludedPromise;
  return { job, log };
}

describe('CreateJob', () => {
  it('is a manual-dismiss, non-block job with one unit of progress, and creates the host file at its exact size', async () => {
    await withTempDir(async (dir) => {
      const { job, log } = await run({ driver: 'file', filename: join(dir, 'a.raw'), size: BigInt(1000) });
      expect(job.type).toBe('create');
      expect(job.isBlockJob).toBe(false);
      expect(job.autoDismiss).toBe(false);
      expect(job.autoFinalize).toBe(true);
      expect([job.progressCurrent, job.progressTotal]).toEqual([1, 1]);
      expect(log).toEqual(['created', 'running', 'waiting', 'pending', 'finished', 'concluded']);
      expect((await stat(join(dir, 'a.raw'))).size).toBe(1000);
    });
  });

  it('empties an existing file (the old bytes do not survive) and reports failures as the job error', async () => {
    await withTempDir(async (dir) => {
      const p = join(dir, 'b.raw');
      await writeFile(p, new Uint8Array(4096).fill(7));
      await run({ driver: 'file', filename: p, size: BigInt(4096) });
      expect((await readFile(p)).every((b) => b === 0)).toBe(true);
      const { job, log } = await run({ driver: 'file', filename: join(dir, 'no', 'x'), size: BigInt(1) });
      expect(job.error).toBe(`Could not create '${join(dir, 'no', 'x')}': No such file or directory`);
      expect(log).toContain('aborting');
    });
  });

  it('formats qcow2 into an open file node; refuses what blockemu cannot write', async () => {
    await withTempDir(async (dir) => {
      const p = join(dir, 'q.qcow2');
      await writeFile(p, new Uint8Array(3 * MiB).fill(9));
      const node = await FileNode.open('f', p, { readOnly: false });
      try {
        const ok = await run({ driver: 'qcow2', file: async () => node, size: BigInt(16 * MiB), clusterSize: 512n, refcountBits: 1n, backingFile: 'base.raw', backingFormat: 'raw' });
        expect(ok.job.error).toBeUndefined();
        expect(node.size()).toBe((await stat(p)).size);
        const refused = await run({ driver: 'qcow2', file: async () => node, size: BigInt(MiB), unsupported: ['encrypt'] });
        expect(refused.job.error).toBe("qcow2 option 'encrypt' is not supported by blockemu");
      } finally {
        await node.close();
      }
      if (qemu.available) {
        const info = JSON.parse((await qemuImg('info', '--output=json', p)).stdout);
        expect(info).toMatchObject({ format: 'qcow2', 'virtual-size': 16 * MiB, 'cluster-size': 512, 'backing-filename': 'base.raw', 'backing-filename-format': 'raw' });
        expect(info['format-specific']['data']).toMatchObject({ 'refcount-bits': 1 });
        await writeFile(join(dir, 'base.raw'), new Uint8Array(16 * MiB));
        expect((await qemuImg('check', p)).code).toBe(0);
      }
    });
  });

  it('preallocates metadata, and with a data file node maps every cluster at its guest offset there (data-file-raw)', async () => {
    await withTempDir(async (dir) => {
      const meta = join(dir, 'm.qcow2');
      const data = join(dir, 'd.raw');
      const pattern = new Uint8Array(2 * MiB).fill(42);
      await writeFile(meta, new Uint8Array(0));
      await writeFile(data, pattern);
      const metaNode = await FileNode.open('meta', meta, { readOnly: false });
      const dataNode = await FileNode.open('data', data, { readOnly: false });
      try {
        const r = await run({ driver: 'qcow2', file: async () => metaNode, dataFile: async () => dataNode, dataFileRaw: true, size: BigInt(2 * MiB) });
        expect(r.job.error).toBeUndefined();
        const unraw = await run({ driver: 'qcow2', file: async () => metaNode, dataFileRaw: true, size: BigInt(MiB) });
        expect(unraw.job.error).toBe('data-file-raw requires data-file');
      } finally {
        await metaNode.close();
        await dataNode.close();
      }
      // The data file's contents were left as they were: the image reads them through its 1:1 mapping.
      expect(Buffer.compare(await readFile(data), Buffer.from(pattern))).toBe(0);
      if (qemu.available) {
        const map = JSON.parse((await qemuImg('map', '--output=json', meta)).stdout);
        expect(map).toEqual([{ start: 0, length: 2 * MiB, depth: 0, present: true, zero: false, data: true, offset: 0 }]);
        expect((await qemuImg('compare', '-f', 'raw', '-F', 'qcow2', data, meta)).code).toBe(0);
        expect((await qemuImg('check', meta)).code).toBe(0);
        const pre = join(dir, 'p.qcow2');
        await writeFile(pre, new Uint8Array(0));
        const node = await FileNode.open('p', pre, { readOnly: false });
        try {
          expect((await run({ driver: 'qcow2', file: async () => node, size: BigInt(MiB), preallocation: 'metadata' })).job.error).toBeUndefined();
        } finally {
          await node.close();
        }
        expect(JSON.parse((await qemuImg('map', '--output=json', pre)).stdout)).toMatchObject([{ start: 0, length: MiB, data: true }]);
        expect((await qemuImg('check', pre)).code).toBe(0);
      }
    });
  });
});
