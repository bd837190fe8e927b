import { QmpError } from '../../qmp/error.js';
import { parseCliObject } from '../../qmp/cli-object.js';
import { ObjectOptions } from '../../qmp/schema/qom.js';
import type { ObjectRegistry } from '../../objects/registry.js';
import { BlockError } from '../../image/errors.js';
import { BlockGraph } from '../../blockdev/graph.js';
import { ImgFailure } from './output.js';

type ObjectDef = Record<string, unknown> & { 'qom-type': string; id: string };

/**
 * The objects `--object` defines for one `blockemu img` run (secrets for
 * encrypted images), as qemu-img's user_creatable_process_cmdline makes
 * them: each definition checked as the option is read, then made at once,
 * in order (files read, base64 decoded, decrypted with another secret).
 * Making is asynchronous here: a failure is reported when the command
 * first looks an object up, or by objectsReady() before it opens anything.
 */
let making: Promise<ObjectRegistry> | undefined;

/** Forgets the objects of an earlier run in the same process (the tools run in-process under tests and embedders). */
export function resetObjects(): void {
  making = undefined;
}

/** --object DEF: parsed now (a bad definition is the command's error), made right after the ones before it. */
export function addObject(text: string): void {
  let def: ObjectDef;
  try {
    def = parseCliObject(ObjectOptions, text, 'qom-type') as ObjectDef;
  } catch (err) {
    if (err instanceof QmpError) throw new ImgFailure(err.desc);
    throw err;
  }
  const before = making ?? newRegistry();
  making = before.then(async (registry) => {
    const { objectAddProperties } = await import('../../qmp/commands/qom.js');
    await registry.add(def['qom-type'], def.id, objectAddProperties(def));
    return registry;
  });
  // Reported where the command waits for it, not as an unhandled rejection meanwhile.
  making.catch(() => undefined);
}

async function newRegistry(): Promise<ObjectRegistry> {
  const { ObjectRegistry } = await import('../../objects/registry.js');
  const { ThrottleGroups } = await import('../../blockdev/throttle/group.js');
  const { RealClock } = await import('../../blockdev/clock.js');
  const clock = new RealClock();
  return new ObjectRegistry(new ThrottleGroups(() => clock));
}

/** Waits for the objects to be made; the first one that could not be is the command's error. */
export async function objectsReady(): Promise<ObjectRegistry | undefined> {
  if (!making) return undefined;
  try {
    return await making;
  } catch (err) {
    throw new ImgFailure(err instanceof Error ? err.message : String(err));
  }
}

/** A node graph for a `blockemu img` command: its encrypted nodes unlock with the command's --object secrets. */
export async function imgBlockGraph(): Promise<BlockGraph> {
  const registry = await objectsReady();
  const graph = new BlockGraph();
  if (registry) graph.secretBytes = (id) => registry.secretUtf8(id);
  return graph;
}

/** The bytes of the secret `id` as an image's password (qcrypto_secret_lookup_as_utf8). */
export async function imgSecretBytes(id: string): Promise<Uint8Array> {
  const registry = await objectsReady();
  if (!registry) throw new BlockError('NOT_FOUND', `No secret with id '${id}'`);
  return registry.secretUtf8(id);
}
