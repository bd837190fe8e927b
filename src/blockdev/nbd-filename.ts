import { BlockError } from '../image/errors.js';
import { probeBytes } from '../image/probe.js';
import { BlockGraph } from './graph.js';
import { NodeByteFile } from './node-file.js';
import type { BlockNode } from './node.js';
import { openBlockdev } from './open.js';

/** NBD_DEFAULT_PORT. */
const DEFAULT_PORT = '10809';

/** The protocols of QEMU's nbd driver (its three BlockDriver tables). */
const NBD_PROTOCOLS = new Set(['nbd', 'nbd+tcp', 'nbd+unix']);

/** The protocol a file name starts with (path_has_protocol: a ':' before any '/'), or undefined for a path. */
export function filenameProtocol(name: string): string | undefined {
  const m = /^[^:/]*:/.exec(name);
  return m ? m[0].slice(0, -1) : undefined;
}

/** Whether bdrv_find_protocol would open `name` with the nbd driver. */
export function isNbdFilename(name: string): boolean {
  const p = filenameProtocol(name);
  return p !== undefined && NBD_PROTOCOLS.has(p);
}

/** The nbd node options a file name stands for (what nbd_parse_filename puts in the options). */
export interface NbdFilenameOptions {
  server?: { type: 'unix'; path: string } | { type: 'inet'; host: string; port: string };
  export?: string;
}

const fail = (message: string) => new BlockError('INVALID_ARGUMENT', message);

/**
 * nbd_parse_filename: `nbd:unix:PATH[:exportname=NAME]`,
 * `nbd:HOST:PORT[:exportname=NAME]`, `nbd[+tcp]://HOST[:PORT]/EXPORT`
 * and `nbd+unix:///EXPORT?socket=PATH` as QEMU reads them, refused in
 * its words. What it leaves out (a bare `nbd:`) the node's open then
 * misses, as in QEMU.
 */
export function nbdFilenameOptions(name: string): NbdFilenameOptions {
  if (name.includes('://')) {
    const o = parseUri(name);
    if (!o) throw fail('No valid URL specified');
    return o;
  }
  const out: NbdFilenameOptions = {};
  let file = name;
  const at = file.indexOf(':exportname=');
  if (at >= 0) {
    const exportName = file.slice(at + ':exportname='.length);
    // QEMU stops here, with no options at all.
    if (exportName === '') return out;
    file = file.slice(0, at);
    out.export = exportName;
  }
  if (!file.startsWith('nbd:')) throw fail("File name string for NBD must start with 'nbd:'");
  const hostSpec = file.slice('nbd:'.length);
  if (hostSpec === '') return out;
  if (hostSpec.startsWith('unix:')) out.server = { type: 'unix', path: hostSpec.slice('unix:'.length) };
  else out.server = { type: 'inet', ...inetParse(hostSpec) };
  return out;
}

/**
 * inet_parse's host and port ("host:port", "[v6]:port", ":port", at most
 * 64 and 32 characters, the port ending at a comma), with its messages.
 */
function inetParse(spec: string): { host: string; port: string } {
  let m: RegExpExecArray | null;
  if (spec.startsWith(':')) {
    if ((m = /^:([^,]{1,32})/.exec(spec))) return { host: '', port: m[1]! };
    throw fail(`error parsing port in address '${spec}'`);
  }
  if (spec.startsWith('[')) {
    if ((m = /^\[([^\]]{1,64})\]:([^,]{1,32})/.exec(spec))) return { host: m[1]!, port: m[2]! };
    throw fail(`error parsing IPv6 address '${spec}'`);
  }
  if ((m = /^([^:]{1,64}):([^,]{1,32})/.exec(spec))) return { host: m[1]!, port: m[2]! };
  throw fail(`error parsing address '${spec}'`);
}

/** nbd_parse_uri: undefined where QEMU answers EINVAL. */
function parseUri(name: string): NbdFilenameOptions | undefined {
  const m = /^([^:/?#]+):\/\/([^/?#]*)([^?#]*)(?:\?([^#]*))?(?:#.*)?$/.exec(name);
  if (!m) return undefined;
  const [, scheme, authority, rawPath, query] = m as unknown as [string, string, string, string, string | undefined];
  if (scheme !== 'nbd' && scheme !== 'nbd+tcp' && scheme !== 'nbd+unix') return undefined;
  const unix = scheme === 'nbd+unix';
  let path: string;
  let params: [string, string][];
  try {
    path = decodeURIComponent(rawPath.startsWith('/') ? rawPath.slice(1) : rawPath);
    // query_params_parse: pairs split at '&' (and ';'); an empty query has none.
    params = (query ?? '')
      .split(/[&;]/)
      .filter((p) => p !== '')
      .map((p) => {
        const eq = p.indexOf('=');
        return eq < 0 ? [decodeURIComponent(p), ''] : [decodeURIComponent(p.slice(0, eq)), decodeURIComponent(p.slice(eq + 1))];
      });
  } catch {
    return undefined;
  }
  const out: NbdFilenameOptions = path !== '' ? { export: path } : {};
  if (params.length > 1 || (unix && params.length === 0) || (!unix && params.length > 0)) return undefined;
  if (unix) {
    if (authority !== '' || params[0]![0] !== 'socket') return undefined;
    return { ...out, server: { type: 'unix', path: params[0]![1] } };
  }
  // nbd[+tcp]://host[:port]/export: a literal IPv6 address loses its brackets.
  const a = /^(?:[^@]*@)?(\[[^\]]*\]|[^:]*)(?::(\d*))?$/.exec(authority);
  if (!a || a[1] === '') return undefined;
  const host = a[1]!.startsWith('[') ? a[1]!.slice(1, -1) : a[1]!;
  const port = a[2] ? String(Number(a[2])) : '';
  return { ...out, server: { type: 'inet', host, port: port === '' || port === '0' ? DEFAULT_PORT : port } };
}

/** An nbd node's options for a file name; the server must be named (QEMU's open fails without it). */
export function nbdFileSpec(name: string): { driver: 'nbd' } & NbdFilenameOptions {
  const o = nbdFilenameOptions(name);
  if (!o.server) throw fail('NBD server address missing');
  return { driver: 'nbd', ...o };
}

/** Runs `fn` on a node of the export `name` opened for it alone (a connection of its own), closed afterwards. */
async function withExport<T>(name: string, readOnly: boolean, fn: (node: BlockNode) => Promise<T>): Promise<T> {
  const graph = new BlockGraph();
  try {
    return await fn(await openBlockdev(graph, { ...nbdFileSpec(name), 'read-only': readOnly }));
  } finally {
    await graph.closeAll();
  }
}

/** An export opened read-write (with leave to resize, as bdrv_create opens it), as a byte file for a format to lay itself out on. */
export function withExportFile<T>(name: string, fn: (file: NodeByteFile) => Promise<T>): Promise<T> {
  return withExport(name, false, (node) => fn(new NodeByteFile(node, name)));
}

/** find_image_format over an export: its first bytes say qcow2 or raw. */
export function probeNbdFormat(name: string): Promise<string> {
  return withExport(name, true, async (node) => probeBytes(await node.read(0, Math.min(8, node.size()))));
}

/**
 * bdrv_co_create_opts_simple, how QEMU "creates" an image on an NBD
 * export: the export must be at least `size` bytes (NBD cannot grow), and
 * its first sector is zeroed so no old header is probed.
 */
export async function createOnNbdExport(name: string, size: number): Promise<void> {
  let opened = false;
  try {
    await withExport(name, false, async (node) => {
      opened = true;
      if (size > node.size()) throw fail('Cannot grow NBD nodes');
      const clear = Math.min(node.size(), 512);
      if (clear > 0) {
        await node.writeZeroes(0, clear, { mayUnmap: true }).catch((err: unknown) => {
          throw fail(`Failed to clear the new image's first sector: ${err instanceof Error ? err.message : String(err)}`);
        });
      }
    });
  } catch (err) {
    if (opened || !(err instanceof Error)) throw err;
    throw fail(`Protocol driver 'nbd' does not support image creation, and opening the image failed: ${err.message}`);
  }
}
