import { type Int64Value, objectError, QomObject, type QomProperty } from './qom-object.js';

/** QEMU's defaults (util/aio-posix.h, event-loop-base.c). */
const DEFAULT_POLL_MAX_NS = 32768;
const DEFAULT_AIO_MAX_BATCH = 0;
const DEFAULT_THREAD_POOL_MIN = 0;
const DEFAULT_THREAD_POOL_MAX = 64;
const INT_MAX = 2147483647;

/**
 * `iothread` and `main-loop` objects (iothread.c, event-loop-base.c):
 * accepted, listed and their properties kept, so tools that create them
 * work — but blockemu runs every node on Node's one event loop by design,
 * so they change nothing about how requests run.
 */
export class EventLoopObject extends QomObject {
  private readonly values = new Map<string, number>([
    ['aio-max-batch', DEFAULT_AIO_MAX_BATCH],
    ['thread-pool-min', DEFAULT_THREAD_POOL_MIN],
    ['thread-pool-max', DEFAULT_THREAD_POOL_MAX],
    ['poll-max-ns', DEFAULT_POLL_MAX_NS],
    ['poll-grow', 0],
    ['poll-shrink', 0],
  ]);

  constructor(readonly typeName: 'iothread' | 'main-loop') {
    super();
  }

  private prop(name: string): QomProperty {
    return {
      name,
      type: 'int',
      get: () => this.values.get(name)!,
      set: (v) => {
        // event_loop_base_set_param / iothread_set_param: int64 values that must not be negative.
        const n = BigInt(v as Int64Value);
        if (n < 0n) throw objectError(`${name} value must be in range [0, ${2n ** 63n - 1n}]`);
        this.values.set(name, Number(n));
      },
    };
  }

  protected ownGroups(): QomProperty[][] {
    const base = ['aio-max-batch', 'thread-pool-min', 'thread-pool-max'].map((n) => this.prop(n));
    if (this.typeName === 'main-loop') return [base];
    return [['poll-max-ns', 'poll-grow', 'poll-shrink'].map((n) => this.prop(n)), base];
  }

  /** event_loop_base_complete (aio_context_set_thread_pool_params): the pool's bounds must make sense. */
  override complete(): void {
    const min = this.values.get('thread-pool-min')!;
    const max = this.values.get('thread-pool-max')!;
    if (min > max || max <= 0 || min > INT_MAX || max > INT_MAX) throw objectError('bad thread-pool-min/thread-pool-max values');
  }
}
