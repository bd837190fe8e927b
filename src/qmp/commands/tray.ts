import type { BlockGraph } from '../../blockdev/graph.js';
import type { BlockNode } from '../../blockdev/node.js';
import type { MonitorBackend } from '../../blockdev/monitor-backends.js';
import { PERM_ALL, PERM_CONSISTENT_READ, PERM_WRITE, PERM_WRITE_UNCHANGED } from '../../image/perm.js';
import type { QmpContext } from '../context.js';
import type { CommandTable } from '../dispatch.js';
import { QmpError } from '../error.js';
import { blockdevChangeMedium, blockdevCloseTray, blockdevInsertMedium, blockdevOpenTray, blockdevRemoveMedium, eject } from '../schema/block-tray.js';
import { type BlockdevSpec, openBlockdev } from '../../blockdev/open.js';
import { protocolOfFilename } from '../../blockdev/protocol-filename.js';
import { probeFormat } from '../../image/probe.js';
import { openFailure } from './drive.js';

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
  node.blockers.check(graph.backends.deviceOrNodeName(node), 'eject');
  await b.blk.remove();
  // A tray-less removable device (a floppy) is told its medium went (fd_change_cb): it takes nothing until the next one.
  if (b.device?.removable && !b.device.tray) await b.blk.setPerm({ perm: 0, shared: PERM_ALL });
  // blk_remove_bs drops the BlockBackend's reference: a -drive's node, which nothing else holds, closes (its image lock goes).
  await graph.release(node);
}

async function insertMedium(graph: BlockGraph, id: string, nodeName: string): Promise<void> {
  const b = getBlk(graph, undefined, id);
  const node = graph.get(nodeName);
  if (!node) throw fail(`Node '${nodeName}' not found`);
  if (node.parents.some((c) => (c.owner as { isBackend?: boolean }).isBackend)) throw fail(`Node '${nodeName}' is already in use`);
  await insertAnonMedium(b, node);
}

/** qmp_blockdev_insert_anon_medium: the device's checks, then the node goes in and a tray-less device is told. */
async function insertAnonMedium(b: MonitorBackend, node: BlockNode): Promise<void> {
  if (b.device && !b.device.removable) throw fail('Device is not removable');
  if (b.device?.tray && !b.trayOpen) throw fail('Tray of the device is not open');
  if (b.node) throw fail('There already is a medium in the device');
  await b.blk.insert(node);
  await mediumLoaded(b);
}

/**
 * A tray-less removable device (a floppy) told of its new medium
 * (fd_change_cb, load): read and, if the medium takes it, write again
 * (blkconf_apply_backend_options), so a read-only image goes in read-only.
 */
async function mediumLoaded(b: MonitorBackend): Promise<void> {
  const node = b.node;
  if (!node || !b.device?.removable || b.device.tray) return;
  await b.blk.setPerm({ perm: PERM_CONSISTENT_READ | (node.readOnly ? 0 : PERM_WRITE), shared: PERM_CONSISTENT_READ | PERM_WRITE_UNCHANGED });
}

/**
 * qmp_blockdev_change_medium: the new image opened first (with the drive's
 * read-only state unless told otherwise, and its detect-zeroes), then the
 * tray opened, the old medium removed, the new one inserted and the tray
 * closed; whatever fails on the way leaves the new image closed again.
 */
async function changeMedium(
  graph: BlockGraph,
  a: { device?: string; id?: string; filename: string; format?: string; force?: boolean; 'read-only-mode'?: 'retain' | 'read-only' | 'read-write' },
): Promise<void> {
  const b = getBlk(graph, a.device, a.id);
  if (b.node) b.rootState = { ...b.rootState, readOnly: b.node.readOnly };
  const mode = a['read-only-mode'] ?? 'retain';
  const readOnly = mode === 'retain' ? b.rootState.readOnly : mode === 'read-only';
  const { proto, probeTarget } = protocolOfFilename(a.filename);
  const driver = a.format ?? (probeTarget !== undefined ? await probeFormat(probeTarget).catch((err: unknown) => openFailure(probeTarget, err)) : 'raw');
  const common = { 'read-only': readOnly, 'detect-zeroes': b.rootState.detectZeroes === 'off' ? 'off' : 'on' };
  const spec = (driver === proto['driver'] ? { ...proto, ...common } : { driver, ...common, file: proto }) as unknown as BlockdevSpec;
  const medium = await openBlockdev(graph, spec, false);
  try {
    try {
      openTray(graph, a.device, a.id);
    } catch (err) {
      if (!(err as { noTray?: boolean }).noTray) throw err;
    }
    await removeMedium(graph, a.device, a.id);
    await insertAnonMedium(b, medium);
    if (b.device) changeMedia(graph, b, true);
  } catch (err) {
    if (!medium.inUse) await graph.discard(medium);
    throw err;
  }
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
    .add(blockdevInsertMedium, (a, ctx) => insertMedium(ctx.graph, a.id, a['node-name']))
    .add(blockdevChangeMedium, (a, ctx) => changeMedium(ctx.graph, a));
}
