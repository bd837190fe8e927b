import { createInterface } from 'node:readline';
import { QmpClient } from '../qmp/client.js';
import { QmpError } from '../qmp/error.js';

export interface ShellIo {
  out(text: string): void;
  err(text: string): void;
}

/** "name {json}" or "name key=value …" (values parsed as JSON when they parse, else strings). */
export function parseShellLine(line: string): { command: string; args?: Record<string, unknown> } | { error: string } {
  const trimmed = line.trim();
  const sp = trimmed.search(/\s/);
  const command = sp < 0 ? trimmed : trimmed.slice(0, sp);
  const rest = sp < 0 ? '' : trimmed.slice(sp + 1).trim();
  const parsed = rest.startsWith('{') ? parseArgs([rest]) : parseArgs(rest === '' ? [] : rest.split(/\s+/));
  return 'error' in parsed ? parsed : { command, ...parsed };
}

/**
 * A command's arguments as words (the shell's, or one line's split at
 * spaces): one JSON object (which the shell may have split into several
 * words), or any number of key=value words, each value parsed as JSON when
 * it parses and a string otherwise (a value may hold spaces when the shell
 * kept it one word).
 */
export function parseArgs(words: readonly string[]): { args?: Record<string, unknown> } | { error: string } {
  if (words.length === 0) return {};
  if (words[0]!.startsWith('{')) {
    try {
      const args = JSON.parse(words.join(' ')) as unknown;
      if (typeof args !== 'object' || args === null || Array.isArray(args)) return { error: 'arguments must be a JSON object' };
      return { args: args as Record<string, unknown> };
    } catch (err) {
      return { error: `arguments are not valid JSON: ${(err as Error).message}` };
    }
  }
  const args: Record<string, unknown> = {};
  for (const pair of words) {
    const eq = pair.indexOf('=');
    if (eq <= 0) return { error: `expected key=value, got '${pair}'` };
    const raw = pair.slice(eq + 1);
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch {
      // A bare word is a string.
    }
    args[pair.slice(0, eq)] = value;
  }
  return { args };
}

const pretty = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;

async function runOne(client: QmpClient, io: ShellIo, command: string, args?: Record<string, unknown>): Promise<boolean> {
  try {
    io.out(pretty(await client.execute(command, args)));
    return true;
  } catch (err) {
    if (err instanceof QmpError) {
      io.err(`${err.qmpClass}: ${err.desc}\n`);
      return false;
    }
    throw err;
  }
}

/**
 * `blockemu qmp -s SOCKET [COMMAND [ARGS…]]`: one command and its
 * pretty-printed reply, or, without a command, an interactive shell
 * (readline history; events printed as they arrive). Exit code 1 when the
 * command (or the last one in the shell) failed, 2 when the daemon cannot
 * be reached or does not greet.
 */
export async function qmpMain(io: ShellIo, socket: string, command: string | undefined, words: readonly string[] = []): Promise<number> {
  let client: QmpClient;
  try {
    client = await QmpClient.connect(socket);
  } catch (err) {
    io.err(`blockemu qmp: cannot connect to '${socket}': ${(err as Error).message}\n`);
    return 2;
  }
  try {
    if (command !== undefined) {
      const parsed = parseArgs(words);
      if ('error' in parsed) {
        io.err(`blockemu qmp: ${parsed.error}\n`);
        return 1;
      }
      return (await runOne(client, io, command, parsed.args)) ? 0 : 1;
    }
    return await shell(client, io);
  } finally {
    await client.close();
  }
}

async function shell(client: QmpClient, io: ShellIo): Promise<number> {
  const rl = createInterface({ input: process.stdin, output: process.stdout, prompt: '(QMP) ', historySize: 1000, terminal: process.stdin.isTTY });
  void (async () => {
    for await (const e of client.events()) io.out(`\nevent ${pretty(e)}`);
  })();
  let ok = true;
  rl.prompt();
  for await (const line of rl) {
    if (line.trim() !== '') {
      const parsed = parseShellLine(line);
      if ('error' in parsed) {
        io.err(`${parsed.error}\n`);
        ok = false;
      } else {
        ok = await runOne(client, io, parsed.command, parsed.args).catch((err: Error) => {
          io.err(`${err.message}\n`);
          return false;
        });
        if (parsed.command === 'quit') break;
      }
    }
    rl.prompt();
  }
  rl.close();
  return ok ? 0 : 1;
}
