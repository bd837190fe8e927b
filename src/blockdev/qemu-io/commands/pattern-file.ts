import { open } from 'node:fs/promises';
import type { CommandContext } from '../command.js';
import { errnoOf, strerror } from '../../../image/errno.js';

/**
 * `write -s FILE`: a buffer of `count` bytes holding FILE's first `count`
 * bytes, repeated when FILE is shorter. Failures print as qemu-io's perror
 * ("FILE: No such file or directory") and its "FILE: file is empty".
 */
export async function patternFromFile(ctx: CommandContext, name: string, count: bigint): Promise<Uint8Array | undefined> {
  const len = Number(count);
  const buf = new Uint8Array(len);
  let got = 0;
  try {
    const fh = await open(name, 'r');
    try {
      while (got < len) {
        const { bytesRead } = await fh.read(buf, got, len - got, null);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
    } finally {
      await fh.close();
    }
  } catch (err) {
    ctx.out.err(`${name}: ${strerror(errnoOf(err))}\n`);
    return undefined;
  }
  if (got === 0) {
    ctx.out.err(`${name}: file is empty\n`);
    return undefined;
  }
  for (let p = got; p < len; p += got) buf.copyWithin(p, 0, Math.min(got, len - p));
  return buf;
}
