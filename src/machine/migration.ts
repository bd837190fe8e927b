/**
 * Live migration between two `blockemu system` processes, as far as the
 * block layer and the monitor see it (migration/migration.c): the
 * source's states and events, its stop at the switch-over and the hand-over
 * of its images (inactivated once flushed, so the destination can lock
 * them); the destination's images opened inactive until the stream has
 * come, then activated, and the run state the source had.
 */
import { BlockError } from '../image/errors.js';
import type { BlockGraph } from '../blockdev/graph.js';
import { activateAll, inactivateAll } from '../blockdev/inactivate.js';
import { ChunkBitmap } from '../blockdev/bitmap.js';
import { connectOutgoing, listenIncoming, type MigrationUri, type OutgoingChannel, parseMigrationUri } from './migration-channel.js';
import { type MachineState, type MigratedBitmap, type MigratedBlock, readStream, writeBlock, writeHeader, writeRam, writeState } from './migration-stream.js';
import type { Readable } from 'node:stream';
import type { Machine, RunStatus } from './run-state.js';

export type MigrationStatus = 'none' | 'setup' | 'cancelling' | 'cancelled' | 'active' | 'postcopy-active' | 'completed' | 'failed';

/** A migration command refused, with QEMU's words (a GenericError). */
export class MigrationError extends Error {}

/** What query-migrate tells, in milliseconds. */
export interface MigrationTimes {
  totalTime?: number;
  setupTime?: number;
  downtime?: number;
}

const RUNNING_STATES: ReadonlySet<MigrationStatus> = new Set(['setup', 'cancelling', 'active', 'postcopy-active']);

export class Migration {
  /** The outgoing migration's state (MigrationState). */
  status: MigrationStatus = 'none';
  /** The incoming migration's state (MigrationIncomingState): what query-migrate tells once there is one. */
  incomingStatus: MigrationStatus = 'none';
  /** The capabilities set (migrate-set-capabilities); all off by default. */
  readonly capabilities = new Set<string>();
  /** The parameters set (migrate-set-parameters), by QAPI name. */
  readonly parameters = new Map<string, unknown>();
  /** -incoming defer: migrate-incoming may start it, once. */
  deferred = false;
  private incomingStarted = false;
  /** The socket an incoming migration listens on, until it has completed (query-migrate's socket-address). */
  listenAddress: { type: 'unix'; path: string } | { type: 'inet'; host: string; port: string } | undefined;
  errorDesc: string | undefined;
  times: MigrationTimes = {};
  /** migrate-start-postcopy was asked for: the switch-over goes through postcopy-active. */
  private postcopy = false;
  private cancelRequested = false;
  /** Rejects once a cancel was asked for: a write waiting for a reader that never comes gives up then. */
  private cancelled: Promise<never> = new Promise(() => undefined);
  private rejectCancelled: (err: Error) => void = () => undefined;
  /** migrate -b/-i: the drives' contents go along (migration/block.c). */
  private blockMigration = false;
  private outgoing: OutgoingChannel | undefined;
  private settled: Promise<void> = Promise.resolve();
  /** A destination whose stream failed ends the process (QEMU exits); set by the command line's owner. */
  fatal: (message: string) => void = (message) => {
    process.stderr.write(`${message}\n`);
    process.exit(1);
  };

  constructor(
    private readonly machine: Machine,
    private readonly graph: BlockGraph,
  ) {}

  get running(): boolean {
    return RUNNING_STATES.has(this.status);
  }

  /** Resolves once the outgoing migration has ended, however (HMP's `migrate` without -d waits for it). */
  whenSettled(): Promise<void> {
    return this.settled;
  }

  private setStatus(s: MigrationStatus): void {
    this.status = s;
    this.announce(s);
  }

  private setIncomingStatus(s: MigrationStatus): void {
    this.incomingStatus = s;
    this.announce(s);
  }

  /** migrate_set_state's event: only with the events capability. */
  private announce(s: MigrationStatus): void {
    if (this.capabilities.has('events')) this.machine.onEvent({ kind: 'migration', status: s });
  }

  private pass(n: number): void {
    if (this.capabilities.has('events')) this.machine.onEvent({ kind: 'migration-pass', pass: n });
  }

  /** migrate-set-capabilities: refused while a migration runs (QERR_MIGRATION_ACTIVE). */
  setCapabilities(caps: ReadonlyArray<{ capability: string; state: boolean }>): void {
    if (this.running) throw new MigrationError("There's a migration process in progress");
    for (const c of caps) {
      if (c.state) this.capabilities.add(c.capability);
      else this.capabilities.delete(c.capability);
    }
  }

  /** migrate_prepare's checks, then the migration starts (its setup state announced before the command returns). */
  start(uri: string, opts: { blk?: boolean; inc?: boolean } = {}): void {
    if (this.running) throw new MigrationError("There's a migration process in progress");
    if (this.machine.status === 'inmigrate') throw new MigrationError('Guest is waiting for an incoming migration');
    if (this.machine.status === 'postmigrate') throw new MigrationError("Can't migrate the vm that was paused due to previous migration");
    this.errorDesc = undefined;
    this.times = {};
    this.postcopy = false;
    this.cancelRequested = false;
    this.cancelled = new Promise<never>((_, reject) => (this.rejectCancelled = reject));
    this.cancelled.catch(() => undefined);
    this.blockMigration = (opts.blk ?? false) || (opts.inc ?? false);
    this.setStatus('setup');
    const parsed = parseMigrationUri(uri);
    if (!parsed) {
      this.setStatus('failed');
      throw new MigrationError("Parameter 'uri' expects a valid migration protocol");
    }
    this.settled = this.runOutgoing(parsed);
  }

  /** migrate-start-postcopy: only with postcopy-ram or dirty-bitmaps set (migrate_postcopy), and before the switch-over. */
  startPostcopy(): void {
    if (this.status === 'none') throw new MigrationError("Postcopy must be started after migration has been started");
    if (!this.capabilities.has('postcopy-ram') && !this.capabilities.has('dirty-bitmaps')) {
      throw new MigrationError('Enable postcopy with migrate_set_capability before the start of migration');
    }
    this.postcopy = true;
  }

  /** migrate_cancel (migrate_fd_cancel): cancelling at once, cancelled when the migration has stopped; the source runs on with its images. */
  cancel(): void {
    if (!this.running || this.cancelRequested) return;
    this.cancelRequested = true;
    this.setStatus('cancelling');
    this.outgoing?.abort();
    this.rejectCancelled(new Error('cancelled'));
  }

  private async runOutgoing(uri: MigrationUri): Promise<void> {
    const start = Date.now();
    try {
      this.outgoing = await connectOutgoing(uri);
    } catch (err) {
      this.errorDesc = err instanceof Error ? err.message : String(err);
      this.setStatus('failed');
      return;
    }
    const ch = this.outgoing;
    ch.done.catch(() => undefined);
    const m = this.machine;
    const runState = m.status;
    let stopped = false;
    try {
      await writeHeader(ch.stream);
      this.times.setupTime = Date.now() - start;
      // ram_save_setup's first dirty-bitmap sync is announced before the migration turns active.
      this.pass(1);
      this.setStatus('active');
      // The iterations: the RAM goes while the machine runs (a monitor may cancel meanwhile).
      await Promise.race([writeRam(ch.stream), this.cancelled]);
      await new Promise((r) => setImmediate(r));
      if (this.cancelRequested) throw new Error('cancelled');
      const downtimeStart = Date.now();
      // migration_completion: the global state stored, the machine stopped, its images handed over.
      m.stopForMigration();
      stopped = true;
      if (this.postcopy) this.setStatus('postcopy-active');
      await inactivateAll(this.graph);
      this.pass(2);
      if (this.blockMigration) await this.sendBlocks(ch);
      await Promise.race([writeState(ch.stream, { runState, bitmaps: this.outgoingBitmaps(), blockMigration: this.blockMigration }), this.cancelled]);
      await Promise.race([ch.done, this.cancelled]);
      if (this.cancelRequested) throw new Error('cancelled');
      this.times.downtime = Date.now() - downtimeStart;
      this.times.totalTime = Date.now() - start;
      this.setStatus('completed');
      m.setStatus('postmigrate');
    } catch (err) {
      ch.abort();
      // The source keeps its images and runs on as before (migration_iteration_finish's failure path).
      await activateAll(this.graph).catch(() => undefined);
      if (stopped) {
        if (runState === 'running') m.cont();
        else m.setStatus(runState === 'finish-migrate' ? 'postmigrate' : runState);
      }
      if (this.cancelRequested) {
        this.setStatus('cancelled');
      } else {
        this.errorDesc = err instanceof Error ? err.message : String(err);
        this.setStatus('failed');
      }
    } finally {
      this.outgoing = undefined;
    }
  }

  /**
   * Block migration: every named drive that can be written, whole, in 1 MiB
   * pieces; pieces of zeroes are left out (the destination's image reads
   * zeroes there already, as QEMU's zero-block handling assumes).
   */
  private async sendBlocks(ch: OutgoingChannel): Promise<void> {
    const PIECE = 1 << 20;
    for (const b of this.graph.backends.list()) {
      const node = b.node;
      if (b.name === '' || !node || node.readOnly) continue;
      for (let offset = 0; offset < node.size(); offset += PIECE) {
        const data = await node.read(offset, Math.min(PIECE, node.size() - offset));
        if (data.every((x) => x === 0)) continue;
        await writeBlock(ch.stream, { device: b.name, offset, data: Buffer.from(data).toString('base64') });
      }
    }
  }

  /** The drives' contents a block migration brought, written once the images are active. */
  private async loadBlocks(blocks: readonly MigratedBlock[]): Promise<void> {
    for (const blk of blocks) {
      const b = this.graph.backends.byName(blk.device);
      if (!b) throw new Error(`Error unknown block device ${blk.device}`);
      await b.blk.write(blk.offset, Buffer.from(blk.data, 'base64'));
    }
  }

  /** The named bitmaps of the named nodes, when the dirty-bitmaps capability is on (migration/block-dirty-bitmap.c). */
  private outgoingBitmaps(): MigratedBitmap[] {
    if (!this.capabilities.has('dirty-bitmaps')) return [];
    const out: MigratedBitmap[] = [];
    for (const node of this.graph.list()) {
      // bdrv_get_device_or_node_name: a drive's root goes by the drive's name, other nodes by theirs.
      const name = this.graph.backends.deviceOrNodeName(node);
      if (name.startsWith('#')) continue;
      for (const b of node.dirtyBitmaps.all()) {
        if (b.name === undefined) continue;
        out.push({ node: name, name: b.name, granularity: b.granularity, disabled: b.disabled, persistent: b.persistent, data: Buffer.from(b.bits.serialize()).toString('base64') });
      }
    }
    return out;
  }

  /** migrate-incoming: only after -incoming defer, and once. */
  async incoming(uri: string): Promise<void> {
    if (!this.deferred) throw new MigrationError("For use with '-incoming defer'");
    if (this.incomingStarted) throw new MigrationError('The incoming migration has already been started');
    if (this.machine.status !== 'inmigrate') throw new MigrationError("'-incoming' was not specified on the command line");
    await this.listen(uri);
  }

  /** qemu_start_incoming_migration: the stream awaited on its transport; loaded once it comes. */
  async listen(uri: string): Promise<void> {
    // qemu_start_incoming_migration announces setup before it looks at the URI; query-migrate does not tell it.
    this.announce('setup');
    const parsed = parseMigrationUri(uri);
    if (!parsed) throw new MigrationError(`unknown migration protocol: ${uri}`);
    const ch = await listenIncoming(parsed);
    this.incomingStarted = true;
    if (parsed.kind === 'unix') this.listenAddress = { type: 'unix', path: parsed.path };
    else if (parsed.kind === 'tcp') this.listenAddress = { type: 'inet', host: parsed.host, port: String(parsed.port) };
    void ch.stream.then((s) => this.load(s));
  }

  private async load(stream: Readable): Promise<void> {
    let state: MachineState;
    try {
      // process_incoming_migration_co runs once the stream has data: then the incoming migration is active.
      state = await readStream(stream, () => this.setIncomingStatus('active'));
    } catch (err) {
      this.setIncomingStatus('failed');
      this.fatal(`load of migration failed: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    stream.destroy();
    // process_incoming_migration_bh: images activated (unless late-block-activate and the machine stays stopped), then its state.
    const m = this.machine;
    const runs = state.runState === 'running' && m.autostart;
    this.graph.openInactive = false;
    if (!this.capabilities.has('late-block-activate') || runs) {
      try {
        await activateAll(this.graph);
      } catch (err) {
        process.stderr.write(`${err instanceof BlockError || err instanceof Error ? err.message : String(err)}\n`);
        m.autostart = false;
      }
    }
    try {
      await this.loadBlocks(state.blocks ?? []);
      // block_load's progress lines, on stdout (the source sends the percentages; all of it has come here).
      if (state.blockMigration) process.stdout.write('Receiving block device images\nCompleted 100 %\n');
    } catch (err) {
      this.setIncomingStatus('failed');
      this.fatal(`load of migration failed: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    this.applyBitmaps(state.bitmaps);
    if (state.runState === 'running') {
      if (m.autostart) {
        m.setStatus('paused');
        m.cont();
      } else m.setStatus('paused');
    } else m.setStatus(state.runState as RunStatus);
    this.listenAddress = undefined;
    this.setIncomingStatus('completed');
  }

  private applyBitmaps(bitmaps: readonly MigratedBitmap[]): void {
    for (const b of bitmaps) {
      const node = this.graph.backends.byName(b.node)?.node ?? this.graph.get(b.node);
      if (!node) continue;
      const old = node.dirtyBitmaps.find(b.name);
      if (old) node.dirtyBitmaps.release(old);
      const made = node.dirtyBitmaps.create(b.name, b.granularity);
      made.disabled = b.disabled;
      made.persistent = b.persistent;
      made.bits = ChunkBitmap.deserialize(node.size(), b.granularity, Buffer.from(b.data, 'base64'));
    }
  }
}
