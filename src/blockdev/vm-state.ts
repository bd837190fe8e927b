import { BlockError } from '../image/errors.js';
import { CHILD_PRIMARY } from './child.js';
import type { BlockNode } from './node.js';

/**
 * bdrv_co_writev_vmstate / bdrv_co_readv_vmstate: a node whose driver keeps
 * a VM state area (qcow2) answers itself; any other passes the request to
 * its primary child (a raw node to its file, a filter to what it filters);
 * the bottom of the chain answers ENOTSUP.
 */
export interface VmStateArea {
  saveVmState(pos: number, data: Uint8Array): Promise<void>;
  loadVmState(pos: number, length: number): Promise<Uint8Array>;
}

function areaOf(node: BlockNode): VmStateArea {
  for (let n: BlockNode | undefined = node; n; n = n.childList().find((c) => c.role & CHILD_PRIMARY)?.node) {
    const a = (n as Partial<{ vmStateArea: VmStateArea }>).vmStateArea;
    if (a) return a;
  }
  throw new BlockError('UNSUPPORTED', 'this image cannot store VM state', { errno: 'ENOTSUP' });
}

export function saveVmState(node: BlockNode, pos: number, data: Uint8Array): Promise<void> {
  return areaOf(node).saveVmState(pos, data);
}

export function loadVmState(node: BlockNode, pos: number, length: number): Promise<Uint8Array> {
  return areaOf(node).loadVmState(pos, length);
}
