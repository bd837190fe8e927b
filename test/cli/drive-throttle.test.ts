/**
 * -drive's limit options without QEMU at hand (test/cli/system-throttle.test.ts
 * compares them with qemu-system-x86_64): drive_new's renames, the numbers
 * as QEMU_OPT_NUMBER reads them, the config blockdev_init builds.
 */
import { describe, expect, it } from 'vitest';
import { driveThrottle, renameLegacyDriveOptions, takeThrottleOptions } from '../../src/cli/drive-throttle.js';
import { BPS_READ, OPS_TOTAL, OPS_WRITE } from '../../src/blockdev/throttle/config.js';

const parse = (entries: Record<string, string>) => {
  const o = new Map(Object.entries(entries));
  renameLegacyDriveOptions(o);
  const taken = takeThrottleOptions(o);
  return { left: o, limits: driveThrottle(taken) };
};

describe('-drive throttling options', () => {
  it('renames the legacy names and leaves the other options for bdrv_open', () => {
    const { left, limits } = parse({ iops: '10', iops_size: '512', group: 'g', bps_rd: '100', bps_rd_max: '200', 'throttling.bps-read-max-length': '3', readonly: 'on', 'file.x': 'y' });
    expect([...left]).toEqual([
      ['file.x', 'y'],
      ['read-only', 'on'],
    ]);
    expect(limits?.group).toBe('g');
    expect(limits?.cfg.opSize).toBe(512);
    expect(limits?.cfg.buckets[OPS_TOTAL]).toMatchObject({ avg: 10, max: 0, burstLength: 1 });
    expect(limits?.cfg.buckets[BPS_READ]).toMatchObject({ avg: 100, max: 200, burstLength: 3 });
  });

  it('reads numbers as strtoull in base 0: hex, octal, and a minus sign wrapping past the limit', () => {
    expect(parse({ iops_wr: '0x20' }).limits?.cfg.buckets[OPS_WRITE]!.avg).toBe(32);
    expect(parse({ iops_wr: '010' }).limits?.cfg.buckets[OPS_WRITE]!.avg).toBe(8);
    expect(() => parse({ bps: '-1' })).toThrow('bps/iops/max values must be within [0, 1000000000000000]');
    expect(() => parse({ bps: '1k' })).toThrow("Parameter 'throttling.bps-total' expects a number");
  });

  it("enables nothing without an average; a group alone is no limit; both names of one option are QEMU's error", () => {
    expect(parse({ group: 'g' }).limits).toBeUndefined();
    expect(parse({ 'throttling.iops-total': '0' }).limits).toBeUndefined();
    expect(() => parse({ bps: '1', 'throttling.bps-total': '2' })).toThrow("'throttling.bps-total' and its alias 'bps' can't be used at the same time");
    expect(() => parse({ readonly: 'on', 'read-only': 'on' })).toThrow("'read-only' and its alias 'readonly' can't be used at the same time");
  });
});
