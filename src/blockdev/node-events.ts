import type { BlockNode } from './node.js';

/**
 * What a node tells the outside world of by itself, not as the answer to a
 * request: QEMU's BLOCK_WRITE_THRESHOLD and BLOCK_IMAGE_CORRUPTED events.
 * Typed here; src/qmp turns them into the wire events.
 */
export type BlockNodeEvent =
  | {
      kind: 'write-threshold';
      node: BlockNode;
      /** How far the write that crossed went past the threshold, in bytes. */
      amountExceeded: number;
      threshold: number;
    }
  | {
      kind: 'image-corrupted';
      node: BlockNode;
      message: string;
      /** The host range the corruption concerns, where known (QEMU sends -1 as absent). */
      offset?: number;
      size?: number;
      /** The image was marked corrupt and the node can serve no more requests. */
      fatal: boolean;
    };

export type BlockNodeEventSink = (e: BlockNodeEvent) => void;
