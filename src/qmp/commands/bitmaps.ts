import * as ops from '../../blockdev/bitmap-ops.js';
import type { QmpContext } from '../context.js';
import type { CommandTable } from '../dispatch.js';
import * as S from '../schema/block-core/bitmaps.js';

/** block-dirty-bitmap-add/-remove/-clear/-enable/-disable/-merge (block/monitor/bitmap-qmp-cmds.c). */
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
    });
}
