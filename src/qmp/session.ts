import type { Duplex } from 'node:stream';
import { type Logger, logs } from '../log.js';
import type { BlockGraph } from '../blockdev/graph.js';
import type { BlockExports } from '../export/exports.js';
import type { ObjectRegistry } from '../objects/registry.js';
import type { BlockJobListener } from '../jobs/block-job.js';
import type { JobManager } from '../jobs/manager.js';
import type { QmpContext, VersionInfo } from './context.js';
import { type CommandTable, dispatch, isOobRequest, type Reply, type SessionState } from './dispatch.js';
import { toQmpJson } from './json-out.js';
import type { Machine } from '../machine/run-state.js';
import type { QmpRecorder } from './recorder.js';
import type { EventDef } from './schema/command.js';

/** One item from the JSON stream: a parsed value, or a parse error with QEMU's desc. */
export type ParsedItem = { value: unknown } | { error: string };

/** The wire parser, fed socket bytes; emits each complete item in order. */
export interface JsonInput {
  feed(chunk: Uint8Array): void;
}
export type ParserFactory = (emit: (item: ParsedItem) => void) => JsonInput;

export interface SessionOptions {
  commands: CommandTable<QmpContext>;
  events: readonly EventDef[];
  version: VersionInfo;
  capabilities: readonly string[];
  graph: BlockGraph;
  jobs: JobManager;
  jobEvents: BlockJobListener;
  exports: BlockExports;
  objects: ObjectRegistry;
  makeParser: ParserFactory;
  /** The machine of `blockemu system`. */
  machine?: Machine;
  /**
   * Settles when the daemon has finished starting. A client can connect while the last monitors are
   * still being set up; its commands wait, as QEMU's monitors wait for the main loop, so that nothing
   * they set off (a job's events) happens before the daemon can deliver it.
   */
  started?: Promise<unknown>;
  /** The process's stdout for QEMU's printf output (QmpContext.printf). */
  printf?: (text: string) => void;
  quit(): void | Promise<void>;
  log: Logger;
  /** Bytes of unsent output after which a client that does not read is dropped. */
  maxPendingOutput: number;
  /** Shared by a daemon's sessions: whether some monitor command is running (QEMU's cur_mon, for error_report's prefix). */
  activity?: MonitorActivity;
  /** Where every exchange is logged as it happens (--record). */
  recorder?: QmpRecorder;
  /** The monitor's pretty=on: messages written indented over several lines. */
  pretty?: boolean;
}

/** What a monitor's commands run with: the daemon's state as the session options carry it, and the session's own. */
export function sessionContext(opts: SessionOptions, session: SessionState): QmpContext {
  return {
    session,
    commands: opts.commands,
    events: opts.events,
    version: opts.version,
    capabilities: opts.capabilities,
    graph: opts.graph,
    jobs: opts.jobs,
    jobEvents: opts.jobEvents,
    exports: opts.exports,
    objects: opts.objects,
    ...(opts.machine ? { machine: opts.machine } : {}),
    ...(opts.printf ? { printf: opts.printf } : {}),
    quit: opts.quit,
  };
}

export interface MonitorActivity {
  commandsRunning: number;
}

/** In-band requests queued per connection: one without oob (reading pauses), eight with it (QMP_REQ_QUEUE_LEN_MAX). */
const QUEUE_WITHOUT_OOB = 1;
const QUEUE_WITH_OOB = 8;

/**
 * One QMP connection: greeting, the negotiation state, requests run one at
 * a time in arrival order (out-of-band ones at once), replies and events
 * written as QEMU writes them. A client that stops reading is disconnected
 * once its unsent output passes the limit, so it can neither stall the
 * daemon nor make it buffer without bound; a client that goes away
 * mid-command lets the command finish (its effects stand, as in QEMU) and
 * its reply is dropped.
 */
export class QmpSession {
  readonly state: SessionState = { negotiated: false, oob: false };
  private readonly queue: ParsedItem[] = [];
  private running = false;
  private closed = false;
  private readonly parser: JsonInput;
  private readonly ctx: QmpContext;

  constructor(
    private readonly socket: Duplex,
    private readonly opts: SessionOptions,
    private readonly onClose: (s: QmpSession) => void,
    /** Names the client in the logs: the monitor's socket and a connection number. */
    private readonly client = 'qmp',
  ) {
    this.ctx = sessionContext(opts, this.state);
    this.parser = opts.makeParser((item) => this.accept(item));
  }

  start(): void {
    const rec = this.opts.recorder;
    rec?.opened(this.client);
    this.socket.on('data', (chunk: Buffer) => {
      rec?.input(this.client, chunk);
      this.parser.feed(chunk);
    });
    this.socket.on('error', (err) => this.opts.log.debug({ client: this.client, err }, 'QMP client socket error'));
    this.socket.on('close', () => this.close());
    this.opts.log.debug({ client: this.client }, 'QMP client connected');
    this.send({ QMP: { version: this.opts.version, capabilities: [...this.opts.capabilities] } });
  }

  private accept(item: ParsedItem): void {
    if ('value' in item && isOobRequest(item.value, this.state.oob)) {
      void this.run(item);
      return;
    }
    this.queue.push(item);
    if (this.queue.length >= (this.state.oob ? QUEUE_WITH_OOB : QUEUE_WITHOUT_OOB)) this.socket.pause();
    void this.drain();
  }

  private async drain(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      for (let item = this.queue.shift(); item; item = this.queue.shift()) {
        if (!this.closed) this.socket.resume();
        await this.run(item);
      }
    } finally {
      this.running = false;
    }
  }

  private async run(item: ParsedItem): Promise<void> {
    let reply: Reply;
    const log = this.opts.log;
    const start = logs(log, 'debug') ? performance.now() : 0;
    if ('error' in item) reply = { error: { class: 'GenericError', desc: item.error } };
    else {
      if (logs(log, 'trace')) log.trace({ client: this.client, request: item.value }, 'QMP request');
      const activity = this.opts.activity;
      if (activity) activity.commandsRunning++;
      try {
        // No command before the machine is set up (its main loop has not begun).
        if (this.opts.started) await this.opts.started;
        if (this.opts.machine) await this.opts.machine.initialized;
        // A job being dismissed is gone before the next command, as in QEMU's one main-loop turn.
        const freeing = this.opts.jobs.dismissalsSettled();
        if (freeing) await freeing;
        reply = await dispatch(this.opts.commands, this.state, item.value, this.ctx);
      } finally {
        if (activity) activity.commandsRunning--;
      }
    }
    if (logs(log, 'debug')) log.debug(commandLine(this.client, item, reply, performance.now() - start), 'QMP command');
    this.send(reply);
  }

  /** Sends an event if this client has completed negotiation (QEMU delivers none before). */
  sendEvent(message: Record<string, unknown>): void {
    if (this.state.negotiated) this.send(message);
  }

  private send(message: unknown): void {
    if (this.closed) return;
    const json = toQmpJson(message);
    this.opts.recorder?.output(this.client, json);
    // QEMU's monitor output turns every newline into CR LF, those inside a pretty message too.
    this.socket.write(`${this.opts.pretty ? toQmpJson(message, true).replaceAll('\n', '\r\n') : json}\r\n`);
    if (this.socket.writableLength > this.opts.maxPendingOutput) {
      this.opts.log.warn({ pending: this.socket.writableLength }, 'QMP client is not reading its replies and events; disconnecting it');
      this.socket.destroy();
      this.close();
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.opts.recorder?.closed(this.client);
    this.opts.log.debug({ client: this.client }, 'QMP client disconnected');
    this.queue.length = 0;
    this.socket.destroy();
    this.onClose(this);
  }
}

/** One command as the debug log tells it: who asked, what, its id, how long it took and how it ended. */
function commandLine(client: string, item: ParsedItem, reply: Reply, ms: number): Record<string, unknown> {
  const req = 'value' in item && typeof item.value === 'object' && item.value !== null ? (item.value as Record<string, unknown>) : {};
  const command = req['execute'] ?? req['exec-oob'];
  return {
    client,
    command: typeof command === 'string' ? command : undefined,
    ...(Object.hasOwn(req, 'id') ? { id: req['id'] } : {}),
    ms: Math.round(ms * 1000) / 1000,
    result: 'error' in reply ? reply.error.class : 'ok',
    ...('error' in reply ? { desc: reply.error.desc } : {}),
  };
}
