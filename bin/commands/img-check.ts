import type { Command } from 'commander';

/** `blockemu img check` (owned by the check work). */
export function addImgCheck(img: Command): void {
  void img;
}
