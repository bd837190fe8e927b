import { createHash } from 'node:crypto';
import * as ops from '../../blockdev/bitmap-ops.js';
import type { QmpContext } from '../context.js';
import type { CommandTable } from '../dispatch.js';
import * as S from '../schema/block-core/bitmaps.js';

/** block-dirty-bitmap-add/-remove/-clear/-enable/-disable/-merge (block/monitor/bitmap-qmp-cmds.c), x-debug-block-dirty-bitmap-sha256. */
export function addBitmapCommands(table: CommandTable<QmpContext>): void {
  table
    .add(S.blockDirtyBitmapAdd, async (a, ctx) => {
      await ops.addBitmap(ctx.graph, a);
    })
    .add(S.blockDirtyBitmapRemove, async (a, ctx) => {
      await ops.removeBitmap(ctx.graph, a.node, a.name);
    })
    .add(S.blockDirtyBitmapClear, (a, ctx) => {
      ops.clearBitmap(ctx.graph, a.node, a.name);
    })
    .add(S.blockDirtyBitmapEnable, (a, ctx) => {
      ops.setBitmapEnabled(ctx.graph, a.node, a.name, true);
    })
    .add(S.blockDirtyBitmapDisable, (a, ctx) => {
      ops.setBitmapEnabled(ctx.graph, a.node, a.name, false);
    })
    .add(S.blockDirtyBitmapMerge, (a, ctx) => {
      ops.mergeBitmaps(ctx.graph, a.node, a.target, a.bitmaps);
    })
    .add(S.xDebugBlockDirtyBitmapSha256, (a, ctx) => {
      const { bitmap } = ops.lookupBitmap(ctx.graph, a.node, a.name);
      // QEMU hashes the HBitmap's last level: one bit per granule in 64-bit little-endian words, at least one word.
      const bits = bitmap.bits.serialize();
      return { sha256: createHash('sha256').update(bits.length > 0 ? bits : new Uint8Array(8)).digest('hex') };
    });
}
