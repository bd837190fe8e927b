import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { EventThrottle } from '../../src/qmp/event-throttle.js';

describe('EventThrottle (monitor_qapi_event_queue)', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('sends the first quorum event at once, holds the last of a period for its end, and leaves other events alone', () => {
    const sent: [string, unknown][] = [];
    const t = new EventThrottle((name, data) => sent.push([name, data]));
    t.emit('QUORUM_REPORT_BAD', 1);
    t.emit('QUORUM_REPORT_BAD', 2);
    t.emit('QUORUM_REPORT_BAD', 3);
    t.emit('QUORUM_FAILURE', 'a');
    t.emit('BLOCK_JOB_COMPLETED', 'x');
    expect(sent).toEqual([['QUORUM_REPORT_BAD', 1], ['QUORUM_FAILURE', 'a'], ['BLOCK_JOB_COMPLETED', 'x']]);
    vi.advanceTimersByTime(999);
    expect(sent).toHaveLength(3);
    vi.advanceTimersByTime(1);
    // Only the newest held one; its sending starts a new period.
    expect(sent.slice(3)).toEqual([['QUORUM_REPORT_BAD', 3]]);
    t.emit('QUORUM_REPORT_BAD', 4);
    expect(sent).toHaveLength(4);
    vi.advanceTimersByTime(1000);
    expect(sent.slice(4)).toEqual([['QUORUM_REPORT_BAD', 4]]);
    // A period with nothing held ends quietly; the next event goes at once.
    vi.advanceTimersByTime(1000);
    t.emit('QUORUM_REPORT_BAD', 5);
    expect(sent.slice(5)).toEqual([['QUORUM_REPORT_BAD', 5]]);
    t.emit('QUORUM_REPORT_BAD', 6);
    t.close();
    vi.advanceTimersByTime(5000);
    expect(sent).toHaveLength(6);
  });
});
