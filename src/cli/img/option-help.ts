import { amendOptionTable, createOptionHelp, optionHelpLines } from '../../image/create-options.js';
import { isFormat } from '../../image/open.js';
import { hasProtocolPrefix } from '../../image/path-protocol.js';
import { type ImgIo, ImgFailure } from './output.js';
import { splitOptionList } from './create-opts.js';

/**
 * `-o help` (or `-o ?`) of create, convert and amend: the option lists
 * qemu-img prints (print_block_option_help, print_amend_option_help), in
 * qemu_opts_print_help's format.
 */

/** qemu-img checks each -o list as it reads it (accumulate_options), before anything else. */
export function checkOptionLists(lists: readonly string[]): void {
  for (const list of lists) if (!splitOptionList(list)) throw new ImgFailure(`Invalid option list: ${list}`);
}

/**
 * has_help_option: a bare `help` or `?` in some list (`help=on` is an
 * option named help). As get_opt_name_value reads it: a name ends at the
 * first `=` or `,` (no `,,` escape there), a value at a single `,`.
 */
export function hasHelpOption(lists: readonly string[]): boolean {
  return lists.some((list) => {
    for (let p = 0; p < list.length; ) {
      let end = p;
      while (end < list.length && list[end] !== '=' && list[end] !== ',') end++;
      if (list[end] !== '=') {
        const name = list.slice(p, end);
        if (name === 'help' || name === '?') return true;
        p = end;
      } else {
        for (p = end + 1; p < list.length; p++) {
          if (list[p] !== ',') continue;
          if (list[p + 1] !== ',') break;
          p++;
        }
      }
      if (p < list.length) p++; // the comma
    }
    return false;
  });
}

/** print_block_option_help: the format's create options, and the protocol's when a target name is given. */
export function printCreateOptionHelp(io: ImgIo, filename: string | undefined, fmt: string): number {
  if (!isFormat(fmt)) throw new ImgFailure(`Unknown file format '${fmt}'`);
  let protocol: 'file' | 'simple' | undefined;
  if (filename !== undefined) {
    const name = hasProtocolPrefix(filename) ? filename.slice(0, filename.indexOf(':')) : 'file';
    if (name === 'file') protocol = 'file';
    else if (name === 'nbd' || name === 'nbd+unix' || name === 'nbd+tcp') protocol = 'simple';
    else throw new ImgFailure(`Unknown protocol '${name}'`);
  }
  io.out(filename !== undefined ? 'Supported options:\n' : `Supported ${fmt} options:\n`);
  for (const line of optionHelpLines(createOptionHelp(fmt, protocol))) io.out(`${line}\n`);
  if (filename === undefined) io.out('\nThe protocol level may support further options.\nSpecify the target filename to include those options.\n');
  return 0;
}

/** print_amend_option_help. */
export function printAmendOptionHelp(io: ImgIo, fmt: string): number {
  if (!isFormat(fmt)) throw new ImgFailure(`Unknown file format '${fmt}'`);
  const table = amendOptionTable(fmt);
  if (!table) throw new ImgFailure(`Format driver '${fmt}' does not support option amendment`);
  io.out(`Amend options for '${fmt}':\n`);
  for (const line of optionHelpLines(table)) io.out(`${line}\n`);
  return 0;
}
