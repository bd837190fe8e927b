import { readFile } from 'node:fs/promises';
import { BlockError } from '../../image/errors.js';

/**
 * A blkdebug config file (blkdebug's `config` option, read by read_config
 * through qemu_config_parse): `[inject-error]` and `[set-state]` sections
 * of `key = "value"` lines, `#` comments. Returns the sections in file
 * order as rule objects with the keys blockdev-add would take.
 */
export async function readBlkdebugConfig(path: string): Promise<{ injectError: Record<string, unknown>[]; setState: Record<string, unknown>[] }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as { code?: string }).code;
    const why = code === 'ENOENT' ? 'No such file or directory' : code === 'EACCES' ? 'Permission denied' : String((err as Error).message);
    throw new BlockError('IO', `Could not read blkdebug config file: ${why}`, { errno: code ?? 'EIO', cause: err });
  }
  const injectError: Record<string, unknown>[] = [];
  const setState: Record<string, unknown>[] = [];
  let current: Record<string, unknown> | undefined;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const where = `${path}:${i + 1}`;
    const group = line.match(/^\[([a-z-]+)(?:\s+"[^"]*")?\]$/);
    if (group) {
      current = {};
      if (group[1] === 'inject-error') injectError.push(current);
      else if (group[1] === 'set-state') setState.push(current);
      else throw new BlockError('INVALID_ARGUMENT', `${where}: There is no option group '${group[1]}'`);
      continue;
    }
    const kv = line.match(/^([a-z_-]+)\s*=\s*"(.*)"$/);
    if (!kv) throw new BlockError('INVALID_ARGUMENT', `${where}: parse error`);
    if (!current) throw new BlockError('INVALID_ARGUMENT', `${where}: no group defined`);
    current[kv[1]!] = kv[2]!;
  }
  return { injectError, setState };
}
