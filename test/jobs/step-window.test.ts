/** StepWindow: steps settle in any order but are met in offset order. */
import { describe, expect, it } from 'vitest';
import { type StepOutcome, StepWindow } from '../../src/jobs/step-window.js';

const later = <T>(ms: number, v: () => T) => new Promise<T>((resolve, reject) => setTimeout(() => { try { resolve(v()); } catch (e) { reject(e); } }, ms));

describe('StepWindow', () => {
  it('counts a step only once every step before it succeeded, and holds the count at the first that did not', async () => {
    const w = new StepWindow();
    w.start(0, 10, () => later<StepOutcome>(20, () => 'done'));
    w.start(10, 10, () => later<StepOutcome>(1, () => ({ operation: 'write', errno: 'ENOSPC' })));
    w.skip(20, 10);
    w.start(30, 10, () => later<StepOutcome>(1, () => 'done'));
    await w.room(2);
    expect(w.takeDone()).toBe(0);
    await w.drain();
    expect(w.takeDone()).toBe(10);
    expect(w.firstUnfinished()).toEqual({ offset: 10, bytes: 10, failure: { operation: 'write', errno: 'ENOSPC' } });
    expect(w.takeDone()).toBe(0);
    w.succeedFirst();
    expect(w.takeDone()).toBe(30);
    expect(w.unfinished).toBe(false);
  });

  it('a work that throws (no I/O error) fails when its step is met, with what it threw', async () => {
    const w = new StepWindow();
    const bug = new TypeError('a bug');
    w.start(0, 10, () => later<StepOutcome>(1, () => 'done'));
    w.start(10, 10, () => later<StepOutcome>(1, () => { throw bug; }));
    await w.drain();
    expect(w.takeDone()).toBe(10);
    expect(w.unfinished).toBe(true);
    expect(() => w.firstUnfinished()).toThrow(bug);
  });
});
