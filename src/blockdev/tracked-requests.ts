/**
 * A node's requests in flight as QEMU's generic layer tracks them
 * (BdrvTrackedRequest, block/io.c), for serialisation: a serialising
 * request (a read-modify-write of the blocks around an unaligned write)
 * keeps every overlapping request out of its range, and plain requests
 * wait for overlapping serialising ones. QEMU's rule for waiting is kept
 * as it is, deadlock avoidance included: a request never waits for one
 * that is itself waiting (it is, or will be, waiting for us).
 */
export class TrackedRequest {
  /** Woken when the request ends (its wait queue), oldest waiter first. */
  readonly waiters: Array<() => void> = [];
  serialising = false;
  waitingFor: TrackedRequest | undefined;

  constructor(
    public overlapStart: number,
    public overlapEnd: number,
  ) {}

  overlaps(start: number, end: number): boolean {
    return start < this.overlapEnd && this.overlapStart < end;
  }
}

export class TrackedRequests {
  /** Newest first, as QEMU inserts them at the list's head. */
  private readonly list: TrackedRequest[] = [];
  private serialisingInFlight = 0;

  /** tracked_request_begin */
  begin(offset: number, bytes: number): TrackedRequest {
    const req = new TrackedRequest(offset, offset + bytes);
    this.list.unshift(req);
    return req;
  }

  /** tracked_request_end: the request leaves the list and whoever waits for it goes on, in the order they came. */
  end(req: TrackedRequest): void {
    const i = this.list.indexOf(req);
    if (i >= 0) this.list.splice(i, 1);
    if (req.serialising) this.serialisingInFlight--;
    for (const wake of req.waiters.splice(0)) wake();
  }

  /** bdrv_make_request_serialising: the range widened to `align`, then every overlapping request waited for. */
  async makeSerialising(req: TrackedRequest, align: number): Promise<void> {
    if (!req.serialising) {
      this.serialisingInFlight++;
      req.serialising = true;
    }
    req.overlapStart = Math.min(req.overlapStart, Math.floor(req.overlapStart / align) * align);
    req.overlapEnd = Math.max(req.overlapEnd, Math.ceil(req.overlapEnd / align) * align);
    await this.waitConflicts(req);
  }

  /** bdrv_wait_serialising_requests: what a plain request does before it reaches the driver. */
  async waitSerialising(req: TrackedRequest): Promise<void> {
    if (this.serialisingInFlight > 0) await this.waitConflicts(req);
  }

  private findConflicting(self: TrackedRequest): TrackedRequest | undefined {
    for (const req of this.list) {
      if (req === self || (!req.serialising && !self.serialising)) continue;
      if (req.overlaps(self.overlapStart, self.overlapEnd) && !req.waitingFor) return req;
    }
    return undefined;
  }

  private async waitConflicts(self: TrackedRequest): Promise<void> {
    for (let req = this.findConflicting(self); req; req = this.findConflicting(self)) {
      self.waitingFor = req;
      await new Promise<void>((resolve) => req.waiters.push(resolve));
      self.waitingFor = undefined;
    }
  }
}
