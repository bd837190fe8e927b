import { formatFixed } from '../../image/numfmt.js';
import type { ImgIo } from './output.js';

const f32 = Math.fround;

/**
 * qemu-img's -p progress line: "    (xx.xx/100%)" followed by "\r", redrawn
 * only when progress moved more than `minSkip` percent (either way) since the last draw
 * (or hits 0 or 100), and a final "\n" when the command ends. QEMU keeps the
 * percentage in C floats (32-bit) and the output depends on their rounding,
 * so every step here goes through Math.fround the way the C arithmetic does.
 */
export class Progress {
  private current = 0;
  private lastPrint = 0;

  constructor(
    private readonly io: ImgIo,
    private readonly enabled: boolean,
    private readonly minSkip: number,
  ) {}

  /** Progress made: `delta` percent of a job that is `max` percent of the whole (qemu_progress_print with max ≠ 0). */
  advance(delta: number, max = 100): void {
    this.set(f32(this.current + f32(f32(f32(delta) / 100) * max)));
  }

  /** Absolute progress in percent (qemu_progress_print with max = 0). */
  setAbsolute(percent: number): void {
    this.set(f32(percent));
  }

  private set(value: number): void {
    const current = value > 100 ? 100 : value;
    this.current = current;
    // Progress may also go back (amend's walks when one more is needed): that is drawn too.
    if (current > f32(this.lastPrint + f32(this.minSkip)) || current < f32(this.lastPrint - f32(this.minSkip)) || current === 100 || current === 0) {
      this.lastPrint = current;
      if (this.enabled) {
        this.io.out(`    (${formatFixed(current, 2)}/100%)\r`);
        this.io.flush?.();
      }
    }
  }

  /** The newline that ends the progress line (printed even when nothing else was). */
  end(): void {
    if (this.enabled) this.io.out('\n');
  }
}

/** ((float) part / whole) * 100, as qemu-img computes a chunk's share. */
export function percentOf(part: number, whole: number): number {
  return f32(f32(f32(part) / f32(whole)) * 100);
}
