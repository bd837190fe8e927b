import type { HmpArgs } from './args.js';
import { callQmp, HmpCommandError, type HmpContext } from './command.js';

/** socket_parse: "unix:PATH", "fd:N" or "HOST:PORT", as SocketAddressLegacy. */
function socketAddress(uri: string): Record<string, unknown> {
  if (uri.startsWith('unix:')) return { type: 'unix', data: { path: uri.slice(5) } };
  if (uri.startsWith('fd:')) return { type: 'fd', data: { str: uri.slice(3) } };
  const colon = uri.lastIndexOf(':');
  if (colon < 0) throw new HmpCommandError(`error parsing address '${uri}'`);
  let host = uri.slice(0, colon);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return { type: 'inet', data: { host, port: uri.slice(colon + 1) } };
}

/** `nbd_server_start [-a] [-w] host:port` (hmp_nbd_server_start): with -a, every inserted drive exported. */
export async function nbdServerStart(ctx: HmpContext, a: HmpArgs): Promise<void> {
  const writable = a['writable'] === true;
  const all = a['all'] === true;
  if (writable && !all) throw new HmpCommandError('-w only valid together with -a');
  await callQmp(ctx, 'nbd-server-start', { addr: socketAddress(a['uri'] as string) });
  if (!all) return;
  const list = (await callQmp(ctx, 'query-block')) as Array<{ device: string; inserted?: unknown }>;
  for (const b of list) {
    if (!b.inserted) continue;
    try {
      await callQmp(ctx, 'nbd-server-add', { device: b.device, writable });
    } catch (err) {
      await callQmp(ctx, 'nbd-server-stop').catch(() => undefined);
      throw err;
    }
  }
}

export async function nbdServerAdd(ctx: HmpContext, a: HmpArgs): Promise<void> {
  await callQmp(ctx, 'nbd-server-add', { device: a['device'], ...(a['name'] !== undefined ? { name: a['name'] } : {}), writable: a['writable'] === true });
}

/** `nbd_server_remove [-f] name`: -f removes at once (mode hard), else safely. */
export async function nbdServerRemove(ctx: HmpContext, a: HmpArgs): Promise<void> {
  await callQmp(ctx, 'nbd-server-remove', { name: a['name'], mode: a['force'] === true ? 'hard' : 'safe' });
}
