import { describe, expect, it } from 'vitest';
import { Job, type JobListener } from '../../src/jobs/job.js';
import { JOB_STATUSES, acceptsVerb, canTransition } from '../../src/jobs/status.js';
import { JobTxn } from '../../src/jobs/txn.js';
import { JobManager } from '../../src/jobs/manager.js';

/** A job body for testing the lifecycle: `steps` units of work, each behind a pause point. */
class StepJob extends Job {
  gate: Promise<void> = Promise.resolve();
  open!: () => void;
  log: string[];
  constructor(id: string, log: string[], private readonly steps: number, private readonly failAt = -1, opts = {}, private readonly stepMs = 0) {
    super(id, 'backup', listener(log), opts);
    this.log = log;
    this.progressTotal = steps;
  }
  /** Makes the job stop before its next step until `open()`. */
  hold(): void {
    this.gate = new Promise((r) => (this.open = r));
  }
  protected async run(): Promise<void> {
    for (let i = 0; i < this.steps; i++) {
      await this.gate;
      await this.pausePoint();
      if (i === this.failAt) throw new Error('Input/output error');
      this.progressCurrent++;
      await new Promise((r) => (this.stepMs > 0 ? setTimeout(r, this.stepMs) : setImmediate(r)));
    }
  }
  override async commit(): Promise<void> {
    this.log.push(`${this.id}:commit`);
  }
  override async abort(): Promise<void> {
    this.log.push(`${this.id}:abort`);
  }
}

function listener(log: string[]): JobListener {
  return {
    statusChanged: (j) => log.push(`${j.id}:${j.status}`),
    pending: (j) => log.push(`${j.id}:PENDING`),
    finished: (j, cancelled) => log.push(`${j.id}:${cancelled ? 'CANCELLED' : 'COMPLETED'}${j.error ? `(${j.error})` : ''}@${j.progressCurrent}/${j.progressTotal}`),
    removed: (j) => log.push(`${j.id}:removed`),
  };
}

const settle = async (job: Job) => {
  for (let i = 0; i < 1000 && job.status !== 'null' && job.status !== 'concluded' && job.status !== 'pending'; i++) await new Promise((r) => setTimeout(r, 1));
};

describe('job state machine tables (job.c)', () => {
  it('allows exactly QEMU\'s transitions and verbs', () => {
    const allowed = JOB_STATUSES.flatMap((f) => JOB_STATUSES.filter((t) => canTransition(f, t)).map((t) => `${f}>${t}`));
    expect(allowed).toHaveLength(20);
    expect(canTransition('paused', 'running')).toBe(true);
    expect(canTransition('paused', 'aborting')).toBe(false);
    expect(canTransition('aborting', 'aborting')).toBe(true);
    expect(acceptsVerb('pending', 'set-speed')).toBe(false);
    expect(acceptsVerb('concluded', 'dismiss')).toBe(true);
    expect(acceptsVerb('waiting', 'cancel')).toBe(true);
  });
});

describe('job lifecycle', () => {
  it('success with defaults: created, running, paused, running, waiting, pending, COMPLETED, concluded, null', async () => {
    const log: string[] = [];
    const j = new StepJob('j0', log, 3);
    j.start();
    await settle(j);
    expect(log).toEqual(['j0:created', 'j0:running', 'j0:paused', 'j0:running', 'j0:waiting', 'j0:pending', 'j0:commit', 'j0:COMPLETED@3/3', 'j0:concluded', 'j0:null', 'j0:removed']);
  });

  it('auto-finalize and auto-dismiss off: waits in pending for finalize, in concluded for dismiss', async () => {
    const log: string[] = [];
    const j = new StepJob('j1', log, 2, -1, { autoFinalize: false, autoDismiss: false });
    j.start();
    await settle(j);
    expect(j.status).toBe('pending');
    expect(log.slice(-2)).toEqual(['j1:pending', 'j1:PENDING']);
    expect(() => j.dismiss()).toThrow("Job 'j1' in state 'pending' cannot accept command verb 'dismiss'");
    await j.finalize();
    expect(j.status).toBe('concluded');
    await j.dismiss();
    expect(log.slice(-5)).toEqual(['j1:commit', 'j1:COMPLETED@2/2', 'j1:concluded', 'j1:null', 'j1:removed']);
  });

  it('failure: aborting, COMPLETED with the error, concluded (even with auto-finalize off)', async () => {
    const log: string[] = [];
    const j = new StepJob('j2', log, 5, 2, { autoFinalize: false });
    j.start();
    await settle(j);
    expect(log.slice(4)).toEqual(['j2:aborting', 'j2:abort', 'j2:COMPLETED(Input/output error)@2/5', 'j2:concluded', 'j2:null', 'j2:removed']);
  });

  it('user pause and resume at pause points; the verbs refuse what QEMU refuses', async () => {
    const log: string[] = [];
    const j = new StepJob('j3', log, 3);
    j.hold();
    j.start();
    j.userPause();
    expect(() => j.userPause()).toThrow('Job is already paused');
    j.open();
    await new Promise((r) => setTimeout(r, 5));
    expect(j.status).toBe('paused');
    expect(j.progressCurrent).toBe(0);
    j.userResume();
    expect(() => j.userResume()).toThrow("Can't resume a job that was not paused");
    await settle(j);
    expect(log).toContain('j3:COMPLETED@3/3');
    expect(log.filter((l) => l === 'j3:paused')).toHaveLength(2);
  });

  it('cancel while running: aborting, CANCELLED with the progress so far, and the events come before cancel() resolves', async () => {
    const log: string[] = [];
    const j = new StepJob('j4', log, 100, -1, {}, 2);
    j.start();
    await new Promise((r) => setTimeout(r, 5));
    await j.cancel();
    expect(j.status).toBe('null');
    expect(log.slice(-6)).toEqual(['j4:aborting', 'j4:abort', expect.stringMatching(/^j4:CANCELLED\(Operation canceled\)@\d+\/100$/), 'j4:concluded', 'j4:null', 'j4:removed']);
  });

  it('cancel of a user-paused job drops the pause; cancel of a pending job cancels it too', async () => {
    const log: string[] = [];
    const j = new StepJob('j5', log, 50, -1, {}, 2);
    j.start();
    j.userPause();
    await new Promise((r) => setTimeout(r, 5));
    await j.cancel();
    expect(log).toContain('j5:concluded');
    const p = new StepJob('j6', log, 2, -1, { autoFinalize: false });
    p.start();
    await settle(p);
    await p.cancel();
    expect(log.slice(-7)).toEqual(['j6:PENDING', 'j6:aborting', 'j6:abort', 'j6:CANCELLED(Operation canceled)@2/2', 'j6:concluded', 'j6:null', 'j6:removed']);
  });

  it('dismissed again while it dismisses itself (a daemon shut down as the job ends): one null, both dismissals resolve', async () => {
    const log: string[] = [];
    let again: Promise<void> | undefined;
    let frees = 0;
    class SlowFree extends StepJob {
      // Freeing takes a while (its links' permissions): a shutdown's dismissal of the concluded job comes meanwhile.
      protected override async free(): Promise<void> {
        if (frees++ === 0) setImmediate(() => (again = this.dismiss()));
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    const j = new SlowFree('j9', log, 1);
    j.start();
    await settle(j);
    for (let i = 0; i < 100 && j.status !== 'null'; i++) await new Promise((r) => setTimeout(r, 1));
    await again;
    expect(frees).toBe(1);
    expect(log.filter((l) => l === 'j9:null')).toHaveLength(1);
    expect(log.slice(-3)).toEqual(['j9:concluded', 'j9:null', 'j9:removed']);
  });

  it('while an auto-dismissed job frees itself the manager says so, so monitors hold their next command until it is gone (QEMU frees it in the turn of its last event)', async () => {
    const log: string[] = [];
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    class GatedFree extends StepJob {
      protected override async free(): Promise<void> {
        await gate;
      }
    }
    const m = new JobManager();
    const j = new GatedFree('j10', log, 1);
    m.add(j);
    expect(m.dismissalsSettled()).toBeUndefined();
    j.start();
    for (let i = 0; i < 1000 && !log.includes('j10:concluded'); i++) await new Promise((r) => setTimeout(r, 1));
    const settled = m.dismissalsSettled();
    expect(settled).toBeDefined();
    let done = false;
    void settled!.then(() => (done = true));
    await new Promise((r) => setTimeout(r, 5));
    expect([done, j.status]).toEqual([false, 'concluded']);
    open();
    await settled;
    expect(j.status).toBe('null');
    expect(m.dismissalsSettled()).toBeUndefined();
  });

  it('a never-started job cancelled goes created, aborting, concluded, null without job events', async () => {
    const log: string[] = [];
    const j = new StepJob('j7', log, 2);
    await j.cancel();
    expect(log).toEqual(['j7:created', 'j7:aborting', 'j7:abort', 'j7:concluded', 'j7:null', 'j7:removed']);
  });
});

describe('job transactions (grouped completion)', () => {
  it('jobs wait for each other, then finalize together in order', async () => {
    const log: string[] = [];
    const txn = new JobTxn();
    const a = new StepJob('a', log, 2, -1, { txn });
    const b = new StepJob('b', log, 6, -1, { txn });
    a.start();
    b.start();
    await settle(b);
    const i = log.indexOf('a:waiting');
    expect(i).toBeGreaterThan(0);
    expect(log.indexOf('b:waiting')).toBeGreaterThan(i);
    expect(log.slice(log.indexOf('b:waiting') + 1)).toEqual([
      'a:pending', 'b:pending', 'a:commit', 'a:COMPLETED@2/2', 'a:concluded', 'a:null', 'a:removed', 'b:commit', 'b:COMPLETED@6/6', 'b:concluded', 'b:null', 'b:removed',
    ]);
  });

  it('one failure cancels the others; every job is finalized on the abort path', async () => {
    const log: string[] = [];
    const txn = new JobTxn();
    const a = new StepJob('a', log, 100, -1, { txn }, 2);
    const b = new StepJob('b', log, 10, 3, { txn });
    a.start();
    b.start();
    await settle(a);
    await settle(b);
    expect(log).toContain('b:COMPLETED(Input/output error)@3/10');
    expect(log.find((l) => l.startsWith('a:CANCELLED'))).toMatch(/^a:CANCELLED\(Operation canceled\)@\d+\/100$/);
    expect(log).not.toContain('a:commit');
    expect(a.status).toBe('null');
    expect(b.status).toBe('null');
  });
});
