/**
 * glibc's getopt_long, as qemu-img's subcommands call it (an optstring
 * starting with ':', so glibc prints nothing and reports '?' or ':'), for
 * commands whose every message must be qemu-img's: which element a mistake
 * is blamed on (qemu-img prints argv[optind - 1]) depends on how far getopt
 * got and on how it permuted the arguments, so this follows its algorithm
 * rather than commander's.
 *
 * What it does: options may come after operands (the operands are moved
 * behind the options as scanning goes, and end up last); "--" ends the
 * options; short options cluster ("-qf fmt", "-fqcow2"); a long option may
 * be abbreviated to any unambiguous prefix and takes its argument as
 * "--opt=value" or as the next element.
 */
export interface LongOption {
  name: string;
  hasArg: boolean;
}

export type GetoptEvent =
  | { kind: 'option'; name: string; value?: string }
  /** '?': unknown option, or an argument given to a long option that takes none. `blamed` is argv[optind - 1]. */
  | { kind: 'unrecognized'; blamed: string }
  /** ':': a required argument is missing. */
  | { kind: 'missing'; blamed: string };

/**
 * Walks `args` (the arguments after the program and command names) and
 * yields each option as getopt_long returns it. Stops at the first mistake,
 * as qemu-img exits there. `operands()` gives the operands once the walk ended.
 * `short` lists the short options, a ':' after those that take an argument.
 */
export class Getopt {
  /** argv as getopt permutes it; index 0 is the command name, as in qemu-img's argv. */
  private readonly argv: string[];
  private optind = 1;
  private nextchar = '';
  private firstNonopt = 1;
  private lastNonopt = 1;
  /**
   * What glibc prints (after "prog: ") for the mistake the walk stopped at,
   * when the optstring does not start with ':' — qemu-io's case, where
   * getopt itself reports; qemu-img's commands word their own.
   */
  diagnostic?: string;

  constructor(
    command: string,
    args: readonly string[],
    private readonly short: string,
    private readonly longs: readonly LongOption[],
  ) {
    this.argv = [command, ...args];
  }

  /** The operands, in their order, after the walk returned all options. */
  operands(): string[] {
    return this.argv.slice(this.optind);
  }

  *[Symbol.iterator](): Generator<GetoptEvent> {
    for (;;) {
      const e = this.next();
      if (e === undefined) return;
      yield e;
      if (e.kind !== 'option') return;
    }
  }

  private isOperand(s: string): boolean {
    return !s.startsWith('-') || s === '-';
  }

  /** Moves the operands skipped so far behind the options found after them (glibc's exchange). */
  private exchange(): void {
    const nonopts = this.argv.slice(this.firstNonopt, this.lastNonopt);
    const opts = this.argv.slice(this.lastNonopt, this.optind);
    this.argv.splice(this.firstNonopt, this.optind - this.firstNonopt, ...opts, ...nonopts);
    this.firstNonopt += this.optind - this.lastNonopt;
    this.lastNonopt = this.optind;
  }

  private next(): GetoptEvent | undefined {
    const argv = this.argv;
    const argc = argv.length;
    if (this.nextchar === '') {
      this.lastNonopt = Math.min(this.lastNonopt, this.optind);
      this.firstNonopt = Math.min(this.firstNonopt, this.optind);
      if (this.firstNonopt !== this.lastNonopt && this.lastNonopt !== this.optind) this.exchange();
      else if (this.lastNonopt !== this.optind) this.firstNonopt = this.optind;
      while (this.optind < argc && this.isOperand(argv[this.optind]!)) this.optind++;
      this.lastNonopt = this.optind;
      if (this.optind !== argc && argv[this.optind] === '--') {
        this.optind++;
        if (this.firstNonopt !== this.lastNonopt && this.lastNonopt !== this.optind) this.exchange();
        else if (this.firstNonopt === this.lastNonopt) this.firstNonopt = this.optind;
        this.lastNonopt = argc;
        this.optind = argc;
      }
      if (this.optind === argc) {
        if (this.firstNonopt !== this.lastNonopt) this.optind = this.firstNonopt;
        return undefined;
      }
      const arg = argv[this.optind]!;
      if (arg.startsWith('--')) return this.long(arg.slice(2));
      this.nextchar = arg.slice(1);
    }
    return this.shortOption();
  }

  private long(text: string): GetoptEvent {
    const eq = text.indexOf('=');
    const name = eq < 0 ? text : text.slice(0, eq);
    const exact = this.longs.find((l) => l.name === name);
    const prefixed = this.longs.filter((l) => l.name.startsWith(name));
    const opt = exact ?? (prefixed.length === 1 ? prefixed[0] : undefined);
    this.optind++;
    const blamed = this.argv[this.optind - 1]!;
    if (opt === undefined) {
      this.diagnostic =
        prefixed.length > 1
          ? `option '--${name}' is ambiguous; possibilities:${prefixed.map((l) => ` '--${l.name}'`).join('')}`
          : `unrecognized option '--${text}'`;
      return { kind: 'unrecognized', blamed };
    }
    if (eq >= 0) {
      if (!opt.hasArg) {
        this.diagnostic = `option '--${opt.name}' doesn't allow an argument`;
        return { kind: 'unrecognized', blamed };
      }
      return { kind: 'option', name: opt.name, value: text.slice(eq + 1) };
    }
    if (!opt.hasArg) return { kind: 'option', name: opt.name };
    if (this.optind < this.argv.length) return { kind: 'option', name: opt.name, value: this.argv[this.optind++]! };
    this.diagnostic = `option '--${opt.name}' requires an argument`;
    return { kind: 'missing', blamed };
  }

  private shortOption(): GetoptEvent {
    const c = this.nextchar[0]!;
    this.nextchar = this.nextchar.slice(1);
    if (this.nextchar === '') this.optind++;
    const at = c === ':' ? -1 : this.short.indexOf(c);
    if (at < 0) {
      this.diagnostic = `invalid option -- '${c}'`;
      return { kind: 'unrecognized', blamed: this.argv[this.optind - 1]! };
    }
    if (this.short[at + 1] !== ':') return { kind: 'option', name: c };
    if (this.nextchar !== '') {
      const value = this.nextchar;
      this.nextchar = '';
      this.optind++;
      return { kind: 'option', name: c, value };
    }
    if (this.optind === this.argv.length) {
      this.diagnostic = `option requires an argument -- '${c}'`;
      return { kind: 'missing', blamed: this.argv[this.optind - 1]! };
    }
    return { kind: 'option', name: c, value: this.argv[this.optind++]! };
  }
}
