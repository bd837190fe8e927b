import type { BlockNodeEvent } from '../../blockdev/node-events.js';

/**
 * A node's own event as QMP sends it (BLOCK_WRITE_THRESHOLD,
 * BLOCK_IMAGE_CORRUPTED, QUORUM_REPORT_BAD, QUORUM_FAILURE). `device` is the name of the BlockBackend whose
 * root the node is (bdrv_get_device_name): a -drive's, else empty (always,
 * in the storage daemon).
 */
export function nodeEvent(e: Extract<BlockNodeEvent, { kind: 'write-threshold' | 'image-corrupted' | 'quorum-report-bad' | 'quorum-failure' }>, device = ''): { name: string; data: Record<string, unknown> } {
  switch (e.kind) {
    case 'quorum-report-bad':
      return {
        name: 'QUORUM_REPORT_BAD',
        data: { type: e.type, ...(e.error !== undefined ? { error: e.error } : {}), 'node-name': e.childName, 'sector-num': e.sectorNum, 'sectors-count': e.sectorsCount },
      };
    case 'quorum-failure':
      // bdrv_get_device_or_node_name: the BlockBackend's name, else the node's.
      return { name: 'QUORUM_FAILURE', data: { reference: device || e.node.nodeName, 'sector-num': e.sectorNum, 'sectors-count': e.sectorsCount } };
    case 'write-threshold':
      return { name: 'BLOCK_WRITE_THRESHOLD', data: { 'node-name': e.node.nodeName, 'amount-exceeded': e.amountExceeded, 'write-threshold': e.threshold } };
    case 'image-corrupted':
      return {
        name: 'BLOCK_IMAGE_CORRUPTED',
        data: {
          device,
          'node-name': e.node.nodeName,
          msg: e.message,
          ...(e.offset !== undefined ? { offset: e.offset } : {}),
          ...(e.size !== undefined ? { size: e.size } : {}),
          fatal: e.fatal,
        },
      };
  }
}
