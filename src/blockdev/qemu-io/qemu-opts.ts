/**
 * QemuOpts option strings as qemu-io reads them (--image-opts, `open -o`,
 * `reopen -o`): qemu_opts_parse_noisily on a list that accepts any key.
 */

/** One parsed option string: the keys in order (a repeated key keeps its last value), and the warnings to print. */
export interface ImageOptsParse {
  opts: Map<string, string>;
  warnings: string[];
}

/**
 * QemuOpts syntax: "key=value" pairs split at ',', where ",," stands for a
 * comma; a bare "key" means key=on and "nokey" key=off, both deprecated
 * (QEMU warns: qemu-io's parse is the "noisy" one). With `implied`
 * (qemu-img's "source" list: "file"), a first parameter without '=' is
 * that option's value instead.
 */
export function parseImageOpts(text: string, implied?: string): ImageOptsParse {
  const opts = new Map<string, string>();
  const warnings: string[] = [];
  let i = 0;
  const readUntil = (stops: string): string => {
    let out = '';
    while (i < text.length) {
      const c = text[i]!;
      if (c === ',' && text[i + 1] === ',' && stops === ',') {
        out += ',';
        i += 2;
        continue;
      }
      if (stops.includes(c)) break;
      out += c;
      i++;
    }
    return out;
  };
  for (let first = true; i < text.length; first = false) {
    const key = readUntil('=,');
    if (text[i] === '=') {
      i++;
      opts.set(key, readUntil(','));
    } else if (implied !== undefined && first) {
      // The first parameter without '=' is the list's implied option's value (qemu_opts_parse with permit_abbrev).
      opts.set(implied, key);
    } else {
      const off = key.startsWith('no');
      const name = off ? key.slice(2) : key;
      warnings.push(`warning: short-form boolean option '${name}' deprecated\nPlease use ${name}=${off ? 'off' : 'on'} instead`);
      opts.set(name, off ? 'off' : 'on');
    }
    if (text[i] === ',') i++;
  }
  return { opts, warnings };
}
