import type { HmpArgs } from './args.js';
import { callQmp, type HmpContext } from './command.js';

/** `quit`: the monitor says nothing more; the process tears down as QMP's quit does. */
export async function quit(ctx: HmpContext): Promise<void> {
  ctx.suspend?.();
  await ctx.qmp.quit();
}

/** `info status` (hmp_info_status). */
export async function infoStatus(ctx: HmpContext): Promise<void> {
  const s = (await callQmp(ctx, 'query-status')) as { running: boolean; status: string; singlestep?: boolean };
  const extra = !s.running && s.status !== 'paused' ? ` (${s.status})` : '';
  ctx.out(`VM status: ${s.running ? 'running' : 'paused'}${s.singlestep ? ' (single step mode)' : ''}${extra}\n`);
}

/** `info version` (hmp_info_version): "7.2.0 (package)". */
export function infoVersion(ctx: HmpContext): void {
  const v = ctx.qmp.version;
  ctx.out(`${v.qemu.major}.${v.qemu.minor}.${v.qemu.micro}${v.package}\n`);
}

/** `block_job_cancel [-f] device` etc.: the QMP command on the job named `device`. */
export const jobArgs = (a: HmpArgs) => ({ device: a['device'] });
