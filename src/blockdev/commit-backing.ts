import { errnoOf } from '../image/errno.js';
import { BlockError } from '../image/errors.js';
import { PERM_ALL, PERM_CONSISTENT_READ, PERM_RESIZE, PERM_WRITE, PERM_WRITE_UNCHANGED } from '../image/perm.js';
import { isAllocated } from './allocation.js';
import { BlockBackend } from './block-backend.js';
import { cowChild } from './chain.js';
import { CommitTopNode } from './drivers/commit-top.js';
import type { BlockGraph } from './graph.js';
import { setBacking } from './graph-edit.js';
import { GraphTransaction } from './graph-transaction.js';
import type { BlockNode } from './node.js';
import { type ReopenContext, reopenSetReadOnly } from './reopen.js';

/** The most one step copies (COMMIT_BUF_SIZE). */
const COMMIT_BUF_SIZE = 2 * 1024 * 1024;

/**
 * Why a commit failed: the errno the monitor prints ("'commit' error for
 * 'X': strerror"), and the message an inner step reported first
 * (error_report_err), if any.
 */
export class CommitFailure extends Error {
  constructor(
    readonly errno: string,
    readonly reported?: string,
  ) {
    super(reported ?? errno);
  }
}

/**
 * bdrv_commit (the monitor's `commit`): what `bs` holds itself is copied
 * into its backing node there and then, not as a job; `bs` is emptied
 * where its format can (bdrv_make_empty), and both are flushed. A
 * commit_top node sits between them meanwhile so the backing node may be
 * written under its overlay; a read-only backing node is reopened
 * read-write for it and read-only again after.
 */
export async function commitIntoBacking(graph: BlockGraph, reopen: ReopenContext, bs: BlockNode): Promise<void> {
  const backing = cowChild(bs);
  if (!backing) throw new CommitFailure('ENOTSUP');
  if (bs.blockers.blocking('commit-source') || backing.blockers.blocking('commit-target')) throw new CommitFailure('EBUSY');
  const ro = backing.readOnly;
  if (ro) {
    try {
      await reopenSetReadOnly(reopen, backing, false);
    } catch {
      throw new CommitFailure('EACCES');
    }
  }
  // WRITE_UNCHANGED is what emptying the image takes.
  const src = new BlockBackend({ perm: PERM_CONSISTENT_READ | PERM_WRITE_UNCHANGED, shared: PERM_ALL });
  const dst = new BlockBackend({ perm: PERM_WRITE | PERM_RESIZE, shared: PERM_ALL });
  let top: CommitTopNode | undefined;
  try {
    await insert(src, bs);
    top = new CommitTopNode(graph.assignName(undefined));
    top.implicit = true;
    graph.add(top, false);
    const ct = top;
    await GraphTransaction.run(async (tran) => {
      await setBacking(tran, ct, backing);
      await setBacking(tran, bs, ct);
    });
    await insert(dst, backing);
    await copyAllocated(bs, backing, dst);
    await bs.makeEmpty().catch((err: unknown) => {
      // A format that cannot empty itself keeps its data (blk_make_empty: -ENOTSUP is ignored).
      if (errnoOf(err) !== 'ENOTSUP') throw err;
    });
    await src.flush();
    await dst.flush();
  } catch (err) {
    throw err instanceof CommitFailure ? err : new CommitFailure(errnoOf(err));
  } finally {
    await dst.remove();
    if (cowChild(bs) !== backing) await GraphTransaction.run((tran) => setBacking(tran, bs, backing)).catch(() => undefined);
    if (top) await graph.release(top);
    await src.remove();
    // The old state comes back whatever happened; its failure is not reported (bdrv_commit ignores it).
    if (ro) await reopenSetReadOnly(reopen, backing, true).catch(() => undefined);
  }
}

/** blk_insert_bs, whose failure is reported before the errno (error_report_err). */
async function insert(blk: BlockBackend, node: BlockNode): Promise<void> {
  try {
    await blk.insert(node);
  } catch (err) {
    throw new CommitFailure(errnoOf(err), err instanceof Error ? err.message : String(err));
  }
}

/** The loop of bdrv_commit: the backing node grows to `bs`'s size first, then each run `bs` allocates is copied down. */
async function copyAllocated(bs: BlockNode, backing: BlockNode, dst: BlockBackend): Promise<void> {
  const length = bs.size();
  if (length > backing.size()) {
    try {
      await backing.resize(length);
    } catch (err) {
      if (err instanceof BlockError) throw new CommitFailure(errnoOf(err), err.message);
      throw err;
    }
  }
  const buf = new Uint8Array(Math.min(COMMIT_BUF_SIZE, Math.max(length, 1)));
  for (let offset = 0, n = 0; offset < length; offset += n) {
    const st = await isAllocated(bs, offset, COMMIT_BUF_SIZE);
    n = st.length;
    if (n <= 0) break;
    if (!st.allocated) continue;
    const data = buf.subarray(0, n);
    await bs.readInto(data, offset);
    await dst.write(offset, data);
  }
}
