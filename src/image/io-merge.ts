import { read, readv, write, writev } from 'node:fs';

/** A merged request stays at most this big: beyond it, separate requests keep more of libuv's threads busy. */
const MERGE_MAX_BYTES = 1 << 20;
/** And under the kernel's IOV_MAX (1024) with room to spare. */
const MERGE_MAX_BUFFERS = 256;

interface Request {
  write: boolean;
  pos: number;
  bufs: Uint8Array[];
  length: number;
  resolve(): void;
  reject(err: unknown): void;
}

function readAt(fd: number, buf: Uint8Array, pos: number): Promise<number> {
  return new Promise((resolve, reject) => read(fd, buf, 0, buf.length, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

function readvAt(fd: number, bufs: Uint8Array[], pos: number): Promise<number> {
  return new Promise((resolve, reject) => readv(fd, bufs, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

function writeAt(fd: number, buf: Uint8Array, pos: number): Promise<number> {
  return new Promise((resolve, reject) => write(fd, buf, 0, buf.length, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

function writevAt(fd: number, bufs: Uint8Array[], pos: number): Promise<number> {
  return new Promise((resolve, reject) => writev(fd, bufs, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

/** `bufs` without their first `skip` bytes. */
function dropBytes(bufs: Uint8Array[], skip: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const b of bufs) {
    if (skip >= b.length) skip -= b.length;
    else {
      out.push(skip > 0 ? b.subarray(skip) : b);
      skip = 0;
    }
  }
  return out;
}

/** Fills `buf` from `pos`; bytes past end of file read as zeroes. */
async function readFully(fd: number, buf: Uint8Array, pos: number): Promise<void> {
  for (let done = 0; done < buf.length; ) {
    const n = await readAt(fd, buf.subarray(done), pos + done);
    if (n === 0) {
      buf.fill(0, done);
      return;
    }
    done += n;
  }
}

async function writeFully(fd: number, bufs: Uint8Array[], pos: number): Promise<void> {
  const total = bufs.reduce((n, b) => n + b.length, 0);
  for (let done = 0; done < total; ) {
    const rest = dropBytes(bufs, done);
    done += rest.length === 1 ? await writeAt(fd, rest[0]!, pos + done) : await writevAt(fd, rest, pos + done);
  }
}

/**
 * Positional reads and writes on one descriptor, where requests issued
 * together (in one turn of the event loop) that touch adjacent bytes go to the
 * kernel as one preadv/pwritev. A qcow2 image's clusters that lie together
 * on the host but apart in the guest are read by separate requests; merged,
 * they cost one trip through libuv's thread pool instead of one each,
 * which is most of what small requests cost in Node.
 *
 * Requests are independent as before: ones issued together were never
 * ordered among themselves (the thread pool runs them in any order), so
 * merging only adjacent, non-overlapping ones changes no outcome. A merged
 * request that fails or comes back short is redone request by request, so
 * each caller gets its own result and its own error.
 */
export class IoMerger {
  private queue: Request[] = [];
  private scheduled = false;
  /** Merged system calls made (a group counts once): lets tests see that merging happens. */
  readonly stats = { mergedCalls: 0 };

  constructor(private readonly fd: number) {}

  /** Fills `buf` from `pos` (zeroes past end of file). */
  read(buf: Uint8Array, pos: number): Promise<void> {
    if (buf.length === 0) return Promise.resolve();
    return this.enqueue(false, [buf], pos);
  }

  /** Writes `bufs` back to back from `pos`, all of them. */
  write(bufs: Uint8Array[], pos: number): Promise<void> {
    const live = bufs.filter((b) => b.length > 0);
    if (live.length === 0) return Promise.resolve();
    return this.enqueue(true, live, pos);
  }

  private enqueue(write: boolean, bufs: Uint8Array[], pos: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const r: Request = { write, pos, bufs, length: bufs.reduce((n, b) => n + b.length, 0), resolve, reject };
      // A request that fills a merge on its own goes at once: waiting would only add latency.
      if (r.length >= MERGE_MAX_BYTES) return void this.runOne(r);
      this.queue.push(r);
      if (!this.scheduled) {
        this.scheduled = true;
        // setImmediate runs once the I/O completions of this turn of the event
        // loop have all been handled: what each of their continuations issues
        // (a task's extents, the writes that follow a read, the next copies of
        // a mirror whose earlier ones finished together) joins one batch. The
        // wait is no longer than the rest of this turn. (nextTick batched only
        // one completion's continuations: sixteen copies finishing at once
        // went out as sixteen calls.)
        setImmediate(() => this.dispatch());
      }
    });
  }

  private dispatch(): void {
    this.scheduled = false;
    const q = this.queue;
    this.queue = [];
    if (q.length > 1) q.sort((a, b) => (a.write === b.write ? a.pos - b.pos : a.write ? 1 : -1));
    for (let i = 0; i < q.length; ) {
      let j = i + 1;
      let bytes = q[i]!.length;
      let nbufs = q[i]!.bufs.length;
      while (j < q.length) {
        const prev = q[j - 1]!;
        const next = q[j]!;
        if (next.write !== prev.write || next.pos !== prev.pos + prev.length) break;
        if (bytes + next.length > MERGE_MAX_BYTES || nbufs + next.bufs.length > MERGE_MAX_BUFFERS) break;
        bytes += next.length;
        nbufs += next.bufs.length;
        j++;
      }
      void (j - i === 1 ? this.runOne(q[i]!) : this.runMerged(q.slice(i, j), bytes));
      i = j;
    }
  }

  private async runOne(r: Request): Promise<void> {
    try {
      if (r.write) await writeFully(this.fd, r.bufs, r.pos);
      else await readFully(this.fd, r.bufs[0]!, r.pos);
      r.resolve();
    } catch (err) {
      r.reject(err);
    }
  }

  private async runMerged(group: Request[], bytes: number): Promise<void> {
    let n = 0;
    this.stats.mergedCalls++;
    try {
      const bufs = group.flatMap((r) => r.bufs);
      n = group[0]!.write ? await writevAt(this.fd, bufs, group[0]!.pos) : await readvAt(this.fd, bufs, group[0]!.pos);
    } catch {
      n = 0; // each request is redone alone and meets the error (or not) itself
    }
    if (n === bytes) {
      for (const r of group) r.resolve();
      return;
    }
    // Short (end of file, a full disk) or failed: whatever is not done is done request by request.
    const base = group[0]!.pos;
    for (const r of group) {
      const done = Math.min(r.length, Math.max(0, base + n - r.pos));
      if (done === r.length) r.resolve();
      else void this.runOne({ ...r, pos: r.pos + done, bufs: dropBytes(r.bufs, done), length: r.length - done });
    }
  }
}
