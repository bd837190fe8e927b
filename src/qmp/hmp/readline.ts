/**
 * The human monitor's line editor as QEMU's readline runs it on a stream
 * (util/readline.c): every byte read is echoed by redrawing the line —
 * back over what was drawn (ESC[D per character), the line, then ESC[K —
 * so a pipe of commands comes back with that noise, which iotests compare.
 * Enter (CR or LF, each on its own) ends the line; backspace and DEL
 * delete before the cursor. Other control bytes and escape sequences are
 * not kept (no history or completion: nothing here types at a terminal).
 */
export class HmpReadline {
  private buf = '';
  /** How many characters the last redraw left on the screen (the cursor is at their end). */
  private drawn = '';

  constructor(
    private readonly print: (text: string) => void,
    private readonly onLine: (line: string) => void,
  ) {}

  /** The prompt starts a fresh line: nothing drawn yet. */
  prompt(text: string): void {
    this.drawn = '';
    this.print(text);
  }

  /** One byte typed. */
  feed(byte: number): void {
    if (byte === 10 || byte === 13) {
      const line = this.buf;
      this.print('\n');
      this.buf = '';
      this.drawn = '';
      this.onLine(line);
      return;
    }
    if (byte === 8 || byte === 127) this.buf = this.buf.slice(0, -1);
    else if (byte >= 32) this.buf += String.fromCharCode(byte);
    else return;
    this.redraw();
  }

  private redraw(): void {
    if (this.buf === this.drawn) return;
    this.print(`${'\x1b[D'.repeat(this.drawn.length)}${this.buf}\x1b[K`);
    this.drawn = this.buf;
  }
}
