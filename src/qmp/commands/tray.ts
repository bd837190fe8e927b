import type { BlockGraph } from '../../blockdev/graph.js';
import type { MonitorBackend } from '../../blockdev/monitor-backends.js';
import type { QmpContext } from '../context.js';
import type { CommandTable } from '../dispatch.js';
import { QmpError } from '../error.js';
import { blockdevCloseTray, blockdevInsertMedium, blockdevOpenTray, blockdevRemoveMedium, eject } from '../schema/block-tray.js';

/**
 * The removable-medium commands (block/qapi-sysemu.c): a tray opens and
 * closes, a medium leaves or enters a BlockBackend. No guest locks a tray
 * here, so `force` never matters. DEVICE_TRAY_MOVED goes out through
 * graph.backends.onTrayMoved when a tray changes.
 */
const fail = (desc: string) => new QmpError('GenericError', desc);

/** qmp_get_blk: by BlockBackend name or by the device's id, exactly one of them. */
export function getBlk(graph: BlockGraph, device: string | undefined, id: string | undefined): MonitorBackend {
  if ((device === undefined) === (id === undefined)) throw fail("Need exactly one of 'device' and 'id'");
  if (id !== undefined) {
    const b = graph.backends.byQdev(id);
    if (b === 'no-backend') throw fail('Device does not have a block device backend');
    if (!b) throw new QmpError('DeviceNotFound', `Device '${id}' not found`);
    return b;
  }
  const b = graph.backends.byName(device!);
  if (!b) throw new QmpError('DeviceNotFound', `Device '${device}' not found`);
  return b;
}

/** blk_dev_change_media_cb: a tray opens (load false) or closes (load true); a tray-less device is told of its medium only. */
function changeMedia(graph: BlockGraph, b: MonitorBackend, load: boolean): void {
  if (!b.device?.tray) return;
  if (b.trayOpen === !load) return;
  b.trayOpen = !load;
  graph.backends.onTrayMoved(b);
}

/** do_open_tray: the message and whether it only says there is no tray (which eject and open-tray let pass). */
function openTray(graph: BlockGraph, device: string | undefined, id: string | undefined): void {
  const b = getBlk(graph, device, id);
  const name = id ?? device!;
  const removable = b.device ? b.device.removable : true;
  if (!removable) throw fail(`Device '${name}' is not removable`);
  if (!b.device?.tray) throw Object.assign(fail(`Device '${name}' does not have a tray`), { noTray: true });
  changeMedia(graph, b, false);
}

async function removeMedium(graph: BlockGraph, device: string | undefined, id: string | undefined): Promise<void> {
  const b = getBlk(graph, device, id);
  const name = device ?? id!;
  if (b.device && !b.device.removable) throw fail(`Device '${name}' is not removable`);
  if (b.device?.tray && !b.trayOpen) throw fail(`Tray of device '${name}' is not open`);
  const node = b.node;
  if (!node) return;
  node.blockers.check(node.nodeName, 'eject');
  await b.blk.remove();
  // blk_remove_bs drops the BlockBackend's reference: a -drive's node, which nothing else holds, closes (its image lock goes).
  await graph.release(node);
}

async function insertMedium(graph: BlockGraph, id: string, nodeName: string): Promise<void> {
  const b = getBlk(graph, undefined, id);
  const node = graph.get(nodeName);
  if (!node) throw fail(`Node '${nodeName}' not found`);
  if (node.parents.some((c) => (c.owner as { isBackend?: boolean }).isBackend)) throw fail(`Node '${nodeName}' is already in use`);
  if (b.device && !b.device.removable) throw fail('Device is not removable');
  if (b.device?.tray && !b.trayOpen) throw fail('Tray of the device is not open');
  if (b.node) throw fail('There already is a medium in the device');
  await b.blk.insert(node);
}

export function addTrayCommands(table: CommandTable<QmpContext>): void {
  table
    .add(eject, async (a, ctx) => {
      try {
        openTray(ctx.graph, a.device, a.id);
      } catch (err) {
        if (!(err as { noTray?: boolean }).noTray) throw err;
      }
      await removeMedium(ctx.graph, a.device, a.id);
    })
    .add(blockdevOpenTray, (a, ctx) => {
      try {
        openTray(ctx.graph, a.device, a.id);
      } catch (err) {
        // No tray (-ENOSYS) is no error for blockdev-open-tray.
        if (!(err as { noTray?: boolean }).noTray) throw err;
      }
    })
    .add(blockdevCloseTray, (a, ctx) => {
      const b = getBlk(ctx.graph, a.device, a.id);
      if (b.device && !b.device.removable) throw fail(`Device '${a.device ?? a.id}' is not removable`);
      changeMedia(ctx.graph, b, true);
    })
    .add(blockdevRemoveMedium, (a, ctx) => removeMedium(ctx.graph, undefined, a.id))
    .add(blockdevInsertMedium, (a, ctx) => insertMedium(ctx.graph, a.id, a['node-name']));
}
