import { chainContains, cowChild, skipFilters } from '../../blockdev/chain.js';
import type { BlockNode } from '../../blockdev/node.js';
import { reopenSetReadOnly } from '../../blockdev/reopen.js';
import { strerror } from '../../image/errno.js';
import { BlockError } from '../../image/errors.js';
import type { QmpContext } from '../context.js';
import type { CommandTable } from '../dispatch.js';
import { QmpError } from '../error.js';
import { changeBackingFileCmd } from '../schema/block-core.js';
import { reopenContext } from './reopen.js';

const fail = (desc: string) => new QmpError('GenericError', desc);

/** qmp_get_root_bs: a node only BlockBackends use (a job's or another node's link makes it no root). */
export function rootNode(ctx: QmpContext, name: string): BlockNode {
  const bs = ctx.graph.find(name);
  if (!bs.parents.every((c) => (c.owner as { isBackend?: boolean }).isBackend)) throw fail('Need a root block node');
  return bs;
}

/**
 * change-backing-file (qmp_change_backing_file): a node of a root's chain
 * names another backing file in its image — the graph itself does not
 * change. A read-only image is reopened read-write for the write and
 * read-only again after, as in QEMU.
 */
async function changeBackingFile(ctx: QmpContext, device: string, imageNodeName: string, backingFile: string): Promise<void> {
  const bs = rootNode(ctx, device);
  const image = ctx.graph.findNode(imageNodeName);
  if (!cowChild(skipFilters(image))) throw fail('not allowing backing file change on an image without a backing file');
  bs.blockers.check(ctx.graph.backends.deviceOrNodeName(bs), 'change');
  if (!chainContains(bs, image)) throw fail(`'${device}' and image file are not in the same chain`);
  const ro = image.readOnly;
  if (ro) await reopenSetReadOnly(reopenContext(ctx), image, false);
  let failure: QmpError | undefined;
  try {
    // The image's own format name goes with it as the backing format, as QEMU writes it.
    await image.changeBackingFile(backingFile, image.driver);
  } catch (err) {
    const errno = err instanceof BlockError && err.errno ? err.errno : 'EIO';
    failure = fail(`Could not change backing file to '${backingFile}': ${strerror(errno)}`);
  }
  if (ro) await reopenSetReadOnly(reopenContext(ctx), image, true);
  if (failure) throw failure;
}

export function addBackingCommands(table: CommandTable<QmpContext>): void {
  table.add(changeBackingFileCmd, (a, ctx) => changeBackingFile(ctx, a.device, a['image-node-name'], a['backing-file']));
}
