/**
 * --blockdev arguments (keyval and JSON): blockemu daemon's message must be
 * qemu-storage-daemon's, word for word, for mistakes caught while parsing,
 * validating or opening.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseKeyval } from '../../src/qmp/keyval.js';
import { BLOCKEMU, qemu, qemuImg, run, withTempDir } from '../helpers/qemu.js';

describe('keyval parsing', () => {
  it('builds nested objects and lists, with ,, escapes and last-wins duplicates', () => {
    expect(parseKeyval('driver=raw,file.driver=file,file.filename=/a,,b,x=1,x=2')).toEqual({ driver: 'raw', file: { driver: 'file', filename: '/a,b' }, x: '2' });
    expect(parseKeyval('l.0.a=1,l.1.a=2')).toEqual({ l: [{ a: '1' }, { a: '2' }] });
    expect(parseKeyval('')).toEqual({});
    expect(() => parseKeyval('a')).toThrow("Expected '=' after parameter 'a'");
    expect(() => parseKeyval('a.b=1,a=2')).toThrow("Parameters 'a.*' used inconsistently");
    expect(() => parseKeyval('l.0=1,l.x=2')).toThrow("Parameters 'l.*' used inconsistently");
    expect(() => parseKeyval('1a=1')).toThrow("Invalid parameter '1a'");
  });
});

describe.skipIf(!qemu.storageDaemon)('--blockdev vs qemu-storage-daemon', () => {
  it('gives the same message for every mistake', async () => {
    await withTempDir(async (dir) => {
      const notQcow2 = join(dir, 'x.raw');
      await qemuImg('create', '-q', '-f', 'raw', notQcow2, '1M');
      const cases = [
        'driver=file',
        'driver=file,filename=/nonexistent-x,aio=bogus',
        'driver=raw,file.driver=file,file.filename=/x,offset=2M',
        'driver=null-co,size=1k,read-zeroes=maybe',
        'driver=null-co,node-name=n,read-zeroes=maybe',
        'driver=null-co,node-name=n,latency-ns=-x',
        'driver=file,,',
        'a.b=1,a=2',
        'driver=raw,file.0=x,file.2=y',
        'driver=bogus',
        'driver=file,filename=/nonexistent',
        'driver=file,node-name=f,filename=/nonexistent',
        '{"driver":"file"}',
        '{"driver": "null-co", "size": "x"}',
        '{"driver": "null-co", "node-name": "n", "bogus": 1}',
        'driver=null-co',
        `driver=qcow2,node-name=q,file.driver=file,file.filename=${notQcow2}`,
        'driver=blkdebug,node-name=b,image.driver=null-co,inject-error.0.event=read_aio,inject-error.0.errno=x',
        'driver=blkdebug,node-name=b,image.driver=null-co,inject-error.0.errno=5',
        'driver=blkdebug,node-name=b,image.driver=null-co,inject-error.0.event=nope',
        `driver=file,node-name=1a,filename=${notQcow2}`,
        `driver=raw,node-name=r,file=nofile`,
        `driver=raw,node-name=r,file.driver=file,file.filename=${notQcow2},offset=4M`,
        `driver=null-co,node-name=n,detect-zeroes=unmap`,
        `driver=file,node-name=f,filename=${notQcow2},cache.direct=maybe`,
        `driver=file,node-name=f,filename=${notQcow2},bogus=1`,
      ];
      for (const arg of cases) {
        const q = await run('qemu-storage-daemon', ['--blockdev', arg]);
        const b = await run(process.execPath, [BLOCKEMU, 'daemon', '--blockdev', arg]);
        expect(q.code, arg).not.toBe(0);
        expect({ arg, code: b.code, stderr: b.stderr.replaceAll('blockemu daemon', 'qemu-storage-daemon') }).toEqual({ arg, code: 1, stderr: q.stderr });
      }
    });
  });
});
