/**
 * Throttle groups as QEMU's block/throttle-groups.c runs them: one
 * ThrottleState shared by every member (a throttle node), reads and
 * writes scheduled separately, and the members taking turns (round robin)
 * when requests wait, so one busy member cannot starve the others. At
 * most one timer per direction is armed in the whole group; when it fires
 * the member holding the token runs its next queued request, which then
 * picks the next member to serve.
 *
 * All time comes from the graph's clock (QEMU_CLOCK_REALTIME in QEMU, or
 * a virtual clock), so under a virtual clock a throttled workload takes
 * exactly the schedule QEMU's arithmetic gives.
 */
import { BlockError } from '../../image/errors.js';
import type { Clock, Sleep } from '../clock.js';
import { checkThrottleConfig, type ThrottleConfig } from './config.js';
import { ThrottleState } from './state.js';

/** A timer on the clock that can be re-armed and deleted (QEMUTimer). */
class ClockTimer {
  private sleep: Sleep | undefined;
  constructor(
    private readonly clock: Clock,
    private readonly fire: () => void,
  ) {}
  get pending(): boolean {
    return this.sleep !== undefined;
  }
  /** timer_mod: fires at `at` (the clock's nanoseconds), replacing any earlier arming. */
  arm(at: number): void {
    this.del();
    const s = this.clock.sleep(Math.max(0, at - this.clock.now()));
    this.sleep = s;
    void s.done.then(() => {
      if (this.sleep !== s) return;
      this.sleep = undefined;
      this.fire();
    });
  }
  del(): void {
    const s = this.sleep;
    this.sleep = undefined;
    s?.wake();
  }
}

/** ThrottleGroupMember: one throttle node's place in its group. */
export class ThrottleGroupMember {
  group: ThrottleGroup | undefined;
  /** Requests queued per direction (read, write), and the functions that let them run. */
  readonly pending = [0, 0];
  private readonly queues: Array<Array<() => void>> = [[], []];
  timers: ClockTimer[] = [];
  /** Set while the member is drained: its requests pass without limits. */
  limitsDisabled = 0;

  /** throttle_group_co_io_limits_intercept: resolves when a request of `bytes` may run. */
  async intercept(bytes: number, isWrite: boolean): Promise<void> {
    const tg = this.group;
    if (!tg) return;
    const w = isWrite ? 1 : 0;
    const token = tg.nextToken(this, w);
    const mustWait = tg.scheduleTimer(token, w);
    if (mustWait || this.pending[w]! > 0) {
      this.pending[w]!++;
      await new Promise<void>((resolve) => this.queues[w]!.push(resolve));
      this.pending[w]!--;
      // Let go by a close that already left the group: nothing more to account.
      if (this.group !== tg) return;
    }
    tg.state.account(isWrite, bytes);
    tg.scheduleNext(this, w);
  }

  /** throttle_group_co_restart_queue: lets the first queued request of a direction run; false when none waits. */
  restartQueue(w: number): boolean {
    const next = this.queues[w]!.shift();
    next?.();
    return next !== undefined;
  }

  /**
   * Before the member leaves its group (blk_io_limits_disable drains
   * first): every queued request runs now without limits. Requests resumed
   * after the member left account nothing (see intercept).
   */
  releaseAll(): void {
    for (let w = 0; w < 2; w++) while (this.restartQueue(w));
  }

  /** throttle_group_restart_tgm: a pending timer fires now, else the next queued request is let go. */
  restart(): void {
    if (!this.group) return;
    for (let w = 0; w < 2; w++) {
      const t = this.timers[w]!;
      if (t.pending) {
        t.del();
        this.group.timerFired(this, w);
      } else {
        this.group.restartQueueEntry(this, w);
      }
    }
  }
}

export class ThrottleGroup {
  readonly state = new ThrottleState();
  /** Members, newest first (QLIST_INSERT_HEAD). */
  private members: ThrottleGroupMember[] = [];
  private readonly tokens: Array<ThrottleGroupMember | undefined> = [undefined, undefined];
  private readonly anyTimerArmed = [false, false];

  constructor(
    readonly name: string,
    private readonly clock: Clock,
    /** Told when the last member leaves (a group only BlockBackends held goes then: throttle_group_unref). */
    private readonly onEmpty?: () => void,
  ) {}

  get memberCount(): number {
    return this.members.length;
  }

  config(): ThrottleConfig {
    return this.state.cfg;
  }

  /** throttle_config on the group's state (the object's `limits` setter): timers already armed keep their time. */
  configure(cfg: ThrottleConfig): void {
    this.state.configure(cfg, this.clock.now());
  }

  /** throttle_group_register_tgm */
  register(tgm: ThrottleGroupMember): void {
    tgm.group = this;
    for (let w = 0; w < 2; w++) this.tokens[w] ??= tgm;
    this.members.unshift(tgm);
    tgm.timers = [new ClockTimer(this.clock, () => this.timerFired(tgm, 0)), new ClockTimer(this.clock, () => this.timerFired(tgm, 1))];
  }

  /** throttle_group_unregister_tgm: the member must have no request waiting. */
  unregister(tgm: ThrottleGroupMember): void {
    if (tgm.group !== this) return;
    for (let w = 0; w < 2; w++) {
      tgm.timers[w]!.del();
      if (this.tokens[w] === tgm) {
        const next = this.nextMember(tgm);
        this.tokens[w] = next === tgm ? undefined : next;
      }
    }
    this.members = this.members.filter((m) => m !== tgm);
    tgm.group = undefined;
    if (this.members.length === 0) this.onEmpty?.();
  }

  private nextMember(tgm: ThrottleGroupMember): ThrottleGroupMember {
    const i = this.members.indexOf(tgm);
    return this.members[i + 1] ?? this.members[0]!;
  }

  /** next_throttle_token: the member whose request goes next — the next one in turn with requests waiting, else `tgm`. */
  nextToken(tgm: ThrottleGroupMember, w: number): ThrottleGroupMember {
    if (tgm.pending[w]! > 0 && tgm.limitsDisabled > 0) return tgm;
    const start = this.tokens[w] ?? tgm;
    let token = this.nextMember(start);
    while (token !== start && token.pending[w] === 0) token = this.nextMember(token);
    if (token === start && token.pending[w] === 0) token = tgm;
    return token;
  }

  /** throttle_group_schedule_timer: whether `tgm`'s request must wait; arms its timer when it must and none is armed in the group. */
  scheduleTimer(tgm: ThrottleGroupMember, w: number): boolean {
    if (tgm.limitsDisabled > 0) return false;
    if (this.anyTimerArmed[w]) return true;
    const now = this.clock.now();
    const wait = this.state.computeWait(now, w === 1);
    if (wait === 0) return false;
    const timer = tgm.timers[w]!;
    if (!timer.pending) timer.arm(now + wait);
    this.tokens[w] = tgm;
    this.anyTimerArmed[w] = true;
    return true;
  }

  /** schedule_next_request: after a request ran, the next waiting one (this member's first) runs or gets a timer. */
  scheduleNext(tgm: ThrottleGroupMember, w: number): void {
    let token = this.nextToken(tgm, w);
    if (token.pending[w] === 0) return;
    const mustWait = this.scheduleTimer(token, w);
    if (mustWait) return;
    if (tgm.restartQueue(w)) {
      token = tgm;
    } else {
      token.timers[w]!.arm(this.clock.now());
      this.anyTimerArmed[w] = true;
    }
    this.tokens[w] = token;
  }

  /** timer_cb */
  timerFired(tgm: ThrottleGroupMember, w: number): void {
    this.anyTimerArmed[w] = false;
    this.restartQueueEntry(tgm, w);
  }

  /** throttle_group_restart_queue_entry: the member's next request runs; with none queued, the next member's is scheduled. */
  restartQueueEntry(tgm: ThrottleGroupMember, w: number): void {
    if (!tgm.restartQueue(w)) this.scheduleNext(tgm, w);
  }
}

/**
 * The groups that exist (QEMU's throttle_groups list): made by
 * throttle-group objects, found by throttle nodes by name.
 */
export class ThrottleGroups {
  private readonly groups = new Map<string, ThrottleGroup>();
  constructor(private readonly clock: () => Clock) {}

  get(name: string): ThrottleGroup | undefined {
    return this.groups.get(name);
  }

  /** throttle_group_obj_complete: a new group with a checked configuration. */
  create(name: string, cfg: ThrottleConfig): ThrottleGroup {
    if (this.groups.has(name)) throw new BlockError('INVALID_ARGUMENT', 'A group with this name already exists');
    checkThrottleConfig(cfg);
    const tg = new ThrottleGroup(name, this.clock());
    tg.state.configure(cfg, this.clock().now());
    this.groups.set(name, tg);
    return tg;
  }

  /**
   * throttle_group_incref for a BlockBackend: the group of that name, or a
   * new one without limits that lasts while it has members (QEMU makes an
   * anonymous throttle-group object, freed with its last reference).
   */
  ref(name: string): ThrottleGroup {
    const found = this.groups.get(name);
    if (found) return found;
    const tg: ThrottleGroup = new ThrottleGroup(name, this.clock(), () => {
      if (this.groups.get(name) === tg) this.groups.delete(name);
    });
    tg.state.configure(tg.config(), this.clock().now());
    this.groups.set(name, tg);
    return tg;
  }

  /** The group's object is deleted (only possible without members). */
  delete(name: string): void {
    this.groups.delete(name);
  }
}
