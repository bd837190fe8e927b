import type { Socket } from 'node:net';
import type { Logger } from '../../log.js';
import type { NbdExport, NbdExportClient } from './export.js';
import { type ExportDirectory, Negotiation } from './negotiation.js';
import { SocketReader } from '../../nbd/socket-reader.js';
import { Transmission } from './transmission.js';

/** How long a finished connection waits for its peer to take the last replies. */
const LINGER_MS = 5000;

/**
 * One client connection: the handshake, then requests on the export it
 * chose until it leaves or is dropped. The export counts it among its
 * clients from the moment it chose it until every request it sent has
 * been answered.
 */
export class NbdConnection implements NbdExportClient {
  private exp: NbdExport | undefined;
  /** Resolves when the connection is over and its requests are done. */
  readonly finished: Promise<void>;

  constructor(
    private readonly socket: Socket,
    directory: ExportDirectory,
    private readonly log: Logger | undefined,
    onExportLeft: (exp: NbdExport) => void,
    /** Names the client in the logs. */
    client = 'nbd',
  ) {
    socket.setNoDelay?.(true);
    const reader = new SocketReader(socket);
    this.finished = (async () => {
      try {
        const chosen = await new Negotiation(socket, reader, directory).run();
        if (!chosen) return;
        this.exp = chosen.exp;
        chosen.exp.clients.add(this);
        log?.debug({ client, export: chosen.exp.name, structured: chosen.structured }, 'NBD client chose export');
        await new Transmission(socket, reader, chosen, log, client).run();
      } catch (err) {
        this.log?.info({ client, err: err instanceof Error ? err.message : String(err) }, this.exp ? 'NBD: disconnect client' : 'NBD: option negotiation failed');
      } finally {
        log?.debug({ client, ...(this.exp ? { export: this.exp.name } : {}) }, 'NBD client disconnected');
        // Replies already written still go out, then the socket closes; a peer that reads none of them is cut off.
        socket.end();
        socket.once('finish', () => socket.destroy());
        setTimeout(() => socket.destroy(), LINGER_MS).unref();
        const exp = this.exp;
        if (exp) {
          exp.clients.delete(this);
          onExportLeft(exp);
        }
      }
    })();
  }

  /** Drops the client at once (nbd-server-stop, block-export-del mode=hard). */
  close(): void {
    this.socket.destroy();
  }
}
