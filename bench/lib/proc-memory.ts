/**
 * Memory of a process and its descendants from /proc, for benches that
 * compare many daemons: blockemu's daemon keeps a perl helper for image
 * locks (src/image/lock-helper.ts), which is part of what it costs, so a
 * daemon's figure is its whole process tree. A process that has gone
 * counts as nothing rather than failing the run.
 */
import { readFile } from 'node:fs/promises';

export interface TreeMemory {
  /** Sum of VmRSS (now), KiB. */
  rssKiB: number;
  /** Sum of VmHWM (peak so far), KiB. */
  hwmKiB: number;
  /** Sum of Pss (shared pages divided among their sharers), KiB. */
  pssKiB: number;
  /** Processes counted. */
  processes: number;
}

async function readOr(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return '';
  }
}

const field = (text: string, name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);

/** The pid and every descendant (through /proc/<pid>/task/<tid>/children). */
export async function processTree(pid: number): Promise<number[]> {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    const p = out[i]!;
    const tasks = (await readOr(`/proc/${p}/task/${p}/children`)).trim();
    if (tasks) out.push(...tasks.split(/\s+/).map(Number));
  }
  return out;
}

/** RSS, peak RSS and PSS summed over these pids' process trees. */
export async function treeMemory(pids: readonly number[]): Promise<TreeMemory> {
  const all = (await Promise.all(pids.map(processTree))).flat();
  const m: TreeMemory = { rssKiB: 0, hwmKiB: 0, pssKiB: 0, processes: 0 };
  await Promise.all(
    all.map(async (pid) => {
      const status = await readOr(`/proc/${pid}/status`);
      if (!status) return;
      m.rssKiB += field(status, 'VmRSS');
      m.hwmKiB += field(status, 'VmHWM');
      // Read before adding: `m.pssKiB += await …` would read m.pssKiB before the await and lose the others' sums.
      const pss = field(await readOr(`/proc/${pid}/smaps_rollup`), 'Pss');
      m.pssKiB += pss;
      m.processes++;
    }),
  );
  return m;
}
