import { Getopt, type LongOption } from '../getopt.js';
import { addObject } from './objects.js';
import { ImgHelpShown, usageError } from './output.js';

/** One option qemu-img's getopt_long loop sees: its short letter or long name, and its argument. */
export interface ImgOption {
  name: string;
  value: string;
}

/**
 * qemu-img's option loop for a subcommand (optstring starting with ':'):
 * the options in order, a mistake thrown where the loop meets it, with
 * qemu-img's words ("missing argument for option '-c'", "unrecognized
 * option '-x'"), so checks a command makes inside its loop ("Cannot mix
 * …") come before or after them as in qemu-img. `operands()` after the
 * loop gives what is left, in getopt's permuted order.
 *
 * The options every subcommand treats alike are taken here and not
 * yielded: -h/--help shows `usage` (ImgHelpShown), -U/--force-share and
 * --image-opts set `forceShare` and `imageOpts`, --object defines an object (objects.ts). A
 * subcommand's optstring still decides which of them it accepts.
 */
export class ImgGetopt {
  private readonly g: Getopt;
  forceShare = false;
  imageOpts = false;

  constructor(
    command: string,
    args: readonly string[],
    short: string,
    longs: readonly LongOption[],
    private readonly usage: string,
  ) {
    this.g = new Getopt(command, args, short, longs);
  }

  *[Symbol.iterator](): Generator<ImgOption> {
    for (const e of this.g) {
      if (e.kind === 'missing') throw usageError(`missing argument for option '${e.blamed}'`);
      if (e.kind === 'unrecognized') throw usageError(`unrecognized option '${e.blamed}'`);
      switch (e.name) {
        case 'h':
        case 'help':
          throw new ImgHelpShown(this.usage);
        case 'U':
        case 'force-share':
          this.forceShare = true;
          break;
        case 'image-opts':
          this.imageOpts = true;
          break;
        case 'object':
          addObject(e.value ?? '');
          break;
        default:
          yield { name: e.name, value: e.value ?? '' };
      }
    }
  }

  operands(): string[] {
    return this.g.operands();
  }
}

