/**
 * GNU getopt(3) as qemu-io's commands use it (short options only, optind
 * reset before each command). GNU getopt permutes: options may come after
 * the operands ("read 0 512 -q" is quiet), "--" ends the options, and a
 * lone "-" is an operand. An option that takes a value takes the rest of its
 * word or else the next word, even one starting with '-'.
 */
export interface ParsedOptions {
  /** Options in the order getopt returns them; a command handles each before looking at the next. */
  options: Array<{ opt: string; value: string }>;
  /**
   * Set when getopt stopped at a bad option: what it printed to stderr. It
   * comes after every entry of `options` (qemu-io may fail on one of those
   * first); qemu-io then prints the command's usage.
   */
  error?: string;
  /** The non-option words, in order (valid only without `error`). */
  operands: string[];
}

/** `spec` is getopt's optstring: letters, each followed by ':' when it takes a value. */
export function getopt(argv: readonly string[], spec: string): ParsedOptions {
  const prog = argv[0] ?? '';
  const options: Array<{ opt: string; value: string }> = [];
  const operands: string[] = [];
  const fail = (message: string): ParsedOptions => ({ options, error: message, operands });
  for (let i = 1; i < argv.length; i++) {
    const word = argv[i]!;
    if (word === '--') {
      operands.push(...argv.slice(i + 1));
      break;
    }
    if (!word.startsWith('-') || word === '-') {
      operands.push(word);
      continue;
    }
    for (let j = 1; j < word.length; j++) {
      const c = word[j]!;
      const at = c === ':' ? -1 : spec.indexOf(c);
      if (at < 0) return fail(`${prog}: invalid option -- '${c}'\n`);
      if (spec[at + 1] !== ':') {
        options.push({ opt: c, value: '' });
        continue;
      }
      if (j + 1 < word.length) options.push({ opt: c, value: word.slice(j + 1) });
      else if (i + 1 < argv.length) options.push({ opt: c, value: argv[++i]! });
      else return fail(`${prog}: option requires an argument -- '${c}'\n`);
      break;
    }
  }
  return { options, operands };
}
