import { spawn } from 'node:child_process';
import { expect } from 'vitest';

/**
 * The crash tests' writer child: runs `node SCRIPT ARGS…` until `delayMs`
 * after it prints "ready" (it has the image open), then SIGKILLs it. Any
 * other end — an exit of its own, anything on stderr — means the child
 * hit an error while writing (e.g. a corrupt-image exception) and fails
 * the test.
 */
export async function runUntilKilled(script: string, args: string[], delayMs: number): Promise<void> {
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.on('exit', (code, signal) => res({ code, signal })));
  await new Promise<void>((res) => {
    child.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && res());
    void exited.then(() => res());
  });
  await new Promise((res) => setTimeout(res, delayMs));
  child.kill('SIGKILL');
  const { code, signal } = await exited;
  expect({ code, signal, stderr }).toEqual({ code: null, signal: 'SIGKILL', stderr: '' });
}
