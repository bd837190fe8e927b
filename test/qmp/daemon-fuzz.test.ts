/**
 * Fuzzing the daemon over its socket: clients sending random bytes, random
 * JSON values and random commands with random arguments, all at once. The
 * daemon must answer every well-formed request exactly once (ids echoed),
 * keep answering a canary client throughout, and never die.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QmpClient } from '../../src/qmp/client.js';
import { BLOCKEMU, withTempDir } from '../helpers/qemu.js';

class RawClient {
  lines: string[] = [];
  private buf = '';
  private constructor(readonly sock: Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
        this.lines.push(this.buf.slice(0, nl).trim());
        this.buf = this.buf.slice(nl + 1);
      }
    });
    sock.on('error', () => undefined);
  }
  static async open(path: string, negotiate: boolean): Promise<RawClient> {
    const sock = await new Promise<Socket>((res, rej) => {
      const s = connect(path);
      s.once('connect', () => res(s));
      s.once('error', rej);
    });
    const c = new RawClient(sock);
    if (negotiate) {
      sock.write('{"execute":"qmp_capabilities"}\n');
      while (c.lines.length < 2) await sleep(2);
      c.lines = [];
    }
    return c;
  }
}

describe('daemon under fuzzing', () => {
  let dir: string;
  let done: () => void;
  let proc: ChildProcess;
  let sock: string;
  let commands: string[] = [];

  beforeAll(async () => {
    await new Promise<void>((ready) => {
      void withTempDir(async (d) => {
        dir = d;
        ready();
        await new Promise<void>((r) => (done = r));
      });
    });
    sock = join(dir, 'qmp.sock');
    proc = spawn(process.execPath, [BLOCKEMU, 'daemon', '--blockdev', 'driver=null-co,node-name=null0', '--chardev', `socket,id=m,path=${sock},server=on,wait=off`, '--monitor', 'chardev=m'], { stdio: 'ignore' });
    for (let i = 0; ; i++) {
      try {
        const c = await QmpClient.connect(sock);
        commands = (await c.execute<Array<{ name: string }>>('query-commands')).map((x) => x.name).filter((n) => n !== 'quit');
        await c.close();
        break;
      } catch {
        if (i > 400) throw new Error('daemon did not start');
        await sleep(25);
      }
    }
  });
  afterAll(async () => {
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
    done();
  });

  const argValue = fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.constantFrom('null0', 'nope', -1, 0, 2 ** 64, 'full', true));
  const request = (names: string[]) =>
    fc.record({ execute: fc.constantFrom(...names), arguments: fc.option(fc.dictionary(fc.constantFrom('node-name', 'device', 'id', 'target', 'sync', 'driver', 'flat', 'speed', 'x', 'enable', 'command-line'), argValue), { nil: undefined }) });

  it('answers every well-formed request once, keeps serving, never dies', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uint8Array({ minLength: 1, maxLength: 300 }), { maxLength: 3 }),
        fc.array(fc.jsonValue({ maxDepth: 4 }), { maxLength: 8 }),
        fc.array(request(commands), { minLength: 1, maxLength: 12 }),
        async (garbage, values, requests) => {
          const garbageClients = await Promise.all(garbage.map(() => RawClient.open(sock, true)));
          const valueClient = await RawClient.open(sock, true);
          const cmdClient = await RawClient.open(sock, true);
          const canary = await QmpClient.connect(sock);
          garbage.forEach((g, i) => garbageClients[i]!.sock.write(g));
          for (const v of values) valueClient.sock.write(`${JSON.stringify(v)}\n`);
          requests.forEach((r, i) => cmdClient.sock.write(`${JSON.stringify({ ...r, id: i })}\n`));
          expect(await canary.execute('query-version')).toMatchObject({ qemu: { major: 7 } });
          const deadline = Date.now() + 10_000;
          while ((valueClient.lines.length < values.length || cmdClient.lines.length < requests.length) && Date.now() < deadline) await sleep(5);
          expect(valueClient.lines).toHaveLength(values.length);
          const ids = cmdClient.lines.map((l) => (JSON.parse(l) as { id?: number }).id);
          expect(ids).toEqual(requests.map((_r, i) => i));
          expect(await canary.execute('query-version')).toMatchObject({ qemu: { major: 7 } });
          for (const c of [...garbageClients, valueClient, cmdClient]) c.sock.destroy();
          await canary.close();
          expect(proc.exitCode).toBeNull();
        },
      ),
      { numRuns: 40 },
    );
  }, 120_000);
});
