import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

/** Whether qemu-img is on PATH (benches still run blockemu's side without it). */
export function hasQemuImg(): boolean {
  return spawnSync('qemu-img', ['--version'], { stdio: 'ignore' }).status === 0;
}

/** Runs qemu-img and returns its stdout; a failure throws with its stderr. */
export async function qemuImg(args: string[]): Promise<string> {
  try {
    return (await execFileP('qemu-img', args, { encoding: 'utf8', maxBuffer: 16 << 20 })).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`qemu-img ${args.join(' ')} failed: ${e.stderr?.trim() || e.message}`);
  }
}

/**
 * Runs `qemu-img bench` and returns the time it reports itself. That timer
 * starts after the image is open and stops when the last request completes,
 * so process start-up, opening and the flush inside close are all outside it
 * — the blockemu side is timed over exactly the same span.
 */
export async function qemuImgBench(args: string[]): Promise<number> {
  const out = await qemuImg(['bench', ...args]);
  const m = /Run completed in ([0-9.]+) seconds/.exec(out);
  if (!m) throw new Error(`qemu-img bench printed no time:\n${out}`);
  return Number(m[1]);
}
