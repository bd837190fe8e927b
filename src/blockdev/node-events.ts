import type { BlockNode } from './node.js';

/**
 * What a node tells the outside world of by itself, not as the answer to a
 * request: QEMU's BLOCK_WRITE_THRESHOLD, BLOCK_IMAGE_CORRUPTED and quorum events
 * (src/qmp turns them into the wire events), the lines QEMU's drivers
 * print with error_report (the daemon writes them to stderr), and a close
 * that failed in a way QEMU would not have told of (the daemon logs it).
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
    }
  | { kind: 'error-report'; node: BlockNode; message: string }
  /** A driver's printf to stdout (blkdebug's "blkdebug: Suspended request 'A'"), which QEMU leaves out under qtest. */
  | { kind: 'debug-print'; node: BlockNode; text: string }
  | { kind: 'close-failed'; node: BlockNode; error: unknown }
  /** A quorum child that failed or was outvoted (QUORUM_REPORT_BAD): `error` is its strerror when it failed. */
  | { kind: 'quorum-report-bad'; node: BlockNode; type: 'read' | 'write' | 'flush'; error?: string; childName: string; sectorNum: number; sectorsCount: number }
  /** A quorum in blkverify mode whose two children differ: QEMU prints `message` and ends the process; a tool does the same, a daemon reports it and fails the read. */
  | { kind: 'verify-mismatch'; node: BlockNode; message: string }
  /** A quorum request no version reached the threshold for (QUORUM_FAILURE). */
  | { kind: 'quorum-failure'; node: BlockNode; sectorNum: number; sectorsCount: number };

export type BlockNodeEventSink = (e: BlockNodeEvent) => void;
