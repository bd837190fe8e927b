import { readdir, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { HELPER_MARKER } from './lock-helper.js';

/**
 * Lock helpers (lock-helper.ts) whose blockemu is gone but which still
 * run: a SIGKILLed blockemu's helper gets its own SIGKILL from the kernel
 * (PR_SET_PDEATHSIG) as its parent dies, yet on a loaded machine it may
 * take some milliseconds more to die, and until then its descriptions
 * still hold the dead process's locks. QEMU holds its locks in-process,
 * so they go with it; a blockemu that finds a conflict waits for such
 * helpers to die before it believes it (iotests kill a VM, then at once
 * write its images).
 */
async function orphanedHelpers(): Promise<number[]> {
  const found: number[] = [];
  let pids: string[];
  try {
    pids = (await readdir('/proc')).filter((d) => /^\d+$/.test(d));
  } catch {
    return found;
  }
  for (const pid of pids) {
    try {
      const argv = (await readFile(`/proc/${pid}/cmdline`, 'latin1')).split('\0');
      if (argv[0] !== 'perl' || argv[1] !== '-e' || !argv[2]?.startsWith(`\n${HELPER_MARKER}\n`)) continue;
      const stat = await readFile(`/proc/${pid}/stat`, 'latin1');
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // A zombie's descriptors are closed; a helper still with the blockemu that started it is a live holder.
      if (state === 'Z' || state === 'X' || ppid === argv[4]) continue;
      found.push(Number(pid));
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return found;
}

/** Waits (up to `maxMs`) until no orphaned helper runs; whether one was found at all. */
export async function waitForOrphanedHelpers(maxMs = 2000): Promise<boolean> {
  let orphans = await orphanedHelpers();
  if (orphans.length === 0) return false;
  for (const deadline = Date.now() + maxMs; orphans.length > 0 && Date.now() < deadline; orphans = await orphanedHelpers()) await sleep(5);
  return true;
}
