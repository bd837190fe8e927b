import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/**
 * On a VM that reports freed memory to its host (virtio-balloon free page
 * reporting), the host unmaps what the guest reports, and the next use of
 * each such page costs a host fault: a run whose page cache or heap lands
 * on reported pages takes 0.5-2 s of extra system time, whichever program
 * it is. The backup bench makes that noise go away rather than average it.
 */
const REPORTED = '/sys/module/page_reporting/parameters/reported_kib';

/** KiB the guest has reported to the host so far, or undefined without page reporting. */
export function reportedKiB(): number | undefined {
  try {
    return Number(readFileSync(REPORTED, 'utf8'));
  } catch {
    return undefined;
  }
}

function availableBytes(): number {
  const m = /MemAvailable:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/**
 * Touches `bytes` of memory in a child process that then exits, right
 * before a timed run: the pages it frees are backed by the host and sit
 * at the front of the free lists, not yet reported (reporting waits
 * seconds), so the run that follows allocates from them. Does nothing
 * without page reporting; never takes more than half the available memory.
 */
export function prefault(bytes: number): void {
  if (reportedKiB() === undefined) return;
  const n = Math.min(bytes, Math.floor(availableBytes() / 2));
  if (n <= 0) return;
  // In pieces of at most 1 GiB: one Buffer cannot be larger than 4 GiB.
  const touch = `const keep = []; for (let left = ${n}; left > 0; left -= 2 ** 30) keep.push(Buffer.alloc(Math.min(left, 2 ** 30), 1));`;
  const r = spawnSync(process.execPath, ['-e', touch], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`prefault: the child touching ${n} bytes exited with ${r.status ?? r.signal}`);
}
