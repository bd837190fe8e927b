import { describe, expect, it } from 'vitest';
import { RequestFence } from '../../src/blockdev/request-fence.js';

/** A request that runs until released, logging its start and end. */
function gate(log: string[], name: string): { fn: () => Promise<void>; release: () => void } {
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  return {
    fn: async () => {
      log.push(`${name} start`);
      await held;
      log.push(`${name} end`);
    },
    release,
  };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('RequestFence', () => {
  it('a prefetch waits for an overlapping write in flight, and a write for an overlapping prefetch', async () => {
    const f = new RequestFence();
    const log: string[] = [];
    const w = gate(log, 'w');
    const p = gate(log, 'p');
    const w2 = gate(log, 'w2');
    const rw = f.run('write', 0, 4096, w.fn);
    const rp = f.run('prefetch', 2048, 4096, p.fn);
    await tick();
    expect(log).toEqual(['w start']);
    w.release();
    await tick();
    expect(log).toEqual(['w start', 'w end', 'p start']);
    const rw2 = f.run('write', 5000, 10, w2.fn);
    await tick();
    expect(log).not.toContain('w2 start');
    p.release();
    w2.release();
    await Promise.all([rw, rp, rw2]);
    expect(log).toEqual(['w start', 'w end', 'p start', 'p end', 'w2 start', 'w2 end']);
  });

  it('requests of one kind, and requests that do not overlap, do not wait', async () => {
    const f = new RequestFence();
    const log: string[] = [];
    const a = gate(log, 'a');
    const b = gate(log, 'b');
    const c = gate(log, 'c');
    const all = [f.run('write', 0, 100, a.fn), f.run('write', 50, 100, b.fn), f.run('prefetch', 200, 100, c.fn)];
    await tick();
    expect(log).toEqual(['a start', 'b start', 'c start']);
    a.release();
    b.release();
    c.release();
    await Promise.all(all);
  });

  it('a failing request still lets the other kind go', async () => {
    const f = new RequestFence();
    await expect(f.run('write', 0, 10, async () => Promise.reject(new Error('EIO')))).rejects.toThrow('EIO');
    await expect(f.run('prefetch', 0, 10, async () => 'ok')).resolves.toBe('ok');
  });
});
