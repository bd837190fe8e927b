import { BlockError } from '../image/errors.js';
import type { ThrottleGroups } from '../blockdev/throttle/group.js';
import { EventLoopObject } from './event-loop.js';
import { objectError, QomObject, type QomProperty } from './qom-object.js';
import { SecretObject } from './secret.js';
import { ThrottleGroupObject } from './throttle-group.js';
import { qomType, typeImplements } from './types.js';

/** A container of the QOM tree ('/', '/objects', '/chardevs'): its children are its own properties. */
export class QomContainer extends QomObject {
  readonly typeName = 'container';
  /** Children in the order they were added. */
  readonly children = new Map<string, QomObject>();

  /** @param path The container's canonical path ('' for the root). */
  constructor(readonly path: string) {
    super();
  }

  /** A child property reads as the child's canonical path. */
  protected ownGroups(): QomProperty[][] {
    const own = [...this.children].map(([name, child]): QomProperty => ({ name, type: `child<${child.typeName}>`, get: () => `${this.path}/${name}` }));
    return [own, []];
  }
}

/** An object standing for something the daemon owns, listed in the tree only (a monitor's chardev). */
export class QomPlaceholder extends QomObject {
  constructor(readonly typeName: string) {
    super();
  }
  protected ownGroups(): QomProperty[][] {
    return [];
  }
}

/** QEMU's id_wellformed (util/id.c). */
const WELL_FORMED = /^[A-Za-z][A-Za-z0-9._-]*$/;

/** The user-creatable types blockemu implements; the others qemu-storage-daemon has are refused by name. */
const IMPLEMENTED = new Set(['throttle-group', 'secret', 'iothread', 'main-loop']);

/**
 * The QOM tree of the daemon (qom/object.c's root): '/chardevs' with the
 * monitors' sockets, and '/objects' — made on first use, as
 * object_get_objects_root does — with the objects users created.
 * object-add and object-del run here, as user_creatable_add_type and
 * user_creatable_del do.
 */
export class ObjectRegistry {
  readonly root = new QomContainer('');
  private mainLoop = false;

  constructor(private readonly throttleGroups: ThrottleGroups) {
    this.root.children.set('chardevs', new QomContainer('/chardevs'));
  }

  /** object_get_objects_root: '/objects', made when first needed. */
  objectsRoot(): QomContainer {
    let c = this.root.children.get('objects') as QomContainer | undefined;
    if (!c) {
      c = new QomContainer('/objects');
      this.root.children.set('objects', c);
    }
    return c;
  }

  /** A monitor's chardev, as qemu-storage-daemon's tree shows it. */
  addChardev(id: string): void {
    (this.root.children.get('chardevs') as QomContainer).children.set(id, new QomPlaceholder('chardev-socket'));
  }

  /** An object of '/objects' by id (object_resolve_path_component). */
  find(id: string): QomObject | undefined {
    return (this.root.children.get('objects') as QomContainer | undefined)?.children.get(id);
  }

  /** The bytes of a loaded secret (qcrypto_secret_lookup). */
  secretBytes(id: string): Uint8Array {
    const obj = this.find(id);
    if (!obj) throw objectError(`No secret with id '${id}'`);
    if (!(obj instanceof SecretObject)) throw objectError(`Object with id '${id}' is not a secret`);
    if (!obj.raw) throw objectError(`Secret with id '${id}' has no data`);
    return obj.raw;
  }

  /**
   * A secret as a password (qcrypto_secret_lookup_as_utf8): its bytes must
   * be UTF-8 without NUL bytes, as g_utf8_validate requires, which the
   * encrypted formats' keys are looked up with.
   */
  secretUtf8(id: string): Uint8Array {
    const raw = this.secretBytes(id);
    let valid = !raw.includes(0);
    if (valid) {
      try {
        new TextDecoder('utf-8', { fatal: true }).decode(raw);
      } catch {
        valid = false;
      }
    }
    if (!valid) throw objectError(`Data from secret ${id} is not valid UTF-8`);
    return raw;
  }

  /**
   * user_creatable_add_type: the id and the type checked, the object made
   * and its properties set (in the order given), put under '/objects',
   * then completed — a failure at any point leaves nothing behind.
   */
  async add(type: string, id: string, props: ReadonlyArray<readonly [string, unknown]>): Promise<void> {
    if (!WELL_FORMED.test(id)) throw new BlockError('INVALID_ARGUMENT', "Parameter 'id' expects an identifier", { hint: "Identifiers consist of letters, digits, '-', '.', '_', starting with a letter." });
    const t = qomType(type);
    if (!t) throw objectError(`invalid object type: ${type}`);
    if (!typeImplements(type, 'user-creatable')) throw objectError(`object type '${type}' isn't supported by object-add`);
    if (t.abstract) throw objectError(`object type '${type}' is abstract`);
    const obj = this.create(type, id);
    for (const [name, value] of props) setProperty(obj, name, value);
    const objects = this.objectsRoot();
    if (objects.children.has(id)) throw objectError(`attempt to add duplicate property '${id}' to object (type 'container')`);
    objects.children.set(id, obj);
    try {
      await obj.complete();
      if (type === 'main-loop') this.claimMainLoop();
    } catch (err) {
      objects.children.delete(id);
      obj.finalize();
      throw err;
    }
  }

  /** An object of the type, not added anywhere, whose properties qom-list-properties lists (object_new); undefined for types blockemu does not model. */
  sample(type: string): QomObject | undefined {
    if (type === 'container') return new QomContainer('');
    if (type === 'object') return new QomPlaceholder('object');
    return IMPLEMENTED.has(type) ? this.create(type, 'sample') : undefined;
  }

  private create(type: string, id: string): QomObject {
    switch (type) {
      case 'throttle-group':
        return new ThrottleGroupObject(id, this.throttleGroups);
      case 'secret':
        return new SecretObject((keyid) => this.secretBytes(keyid));
      case 'iothread':
      case 'main-loop':
        return new EventLoopObject(type);
    }
    if (!IMPLEMENTED.has(type)) throw new BlockError('UNSUPPORTED', `object type '${type}' is not supported by blockemu`);
    throw new Error(`unreachable: ${type}`);
  }

  /** main_loop_init: qemu-storage-daemon's one main loop may have one object. */
  private claimMainLoop(): void {
    if (this.mainLoop) throw objectError('only one main-loop instance allowed');
    this.mainLoop = true;
  }

  /** user_creatable_del */
  del(id: string): void {
    const objects = this.objectsRoot();
    const obj = objects.children.get(id);
    if (!obj) throw objectError(`object '${id}' not found`);
    if (!obj.canBeDeleted()) throw objectError(`object '${id}' is in use, can not be deleted`);
    objects.children.delete(id);
    if (obj instanceof EventLoopObject && obj.typeName === 'main-loop') this.mainLoop = false;
    obj.finalize();
  }

  /** Every user object goes (daemon shutdown), as QEMU's exit finalizes them. */
  clear(): void {
    const objects = this.root.children.get('objects') as QomContainer | undefined;
    for (const obj of objects?.children.values() ?? []) obj.finalize();
    objects?.children.clear();
  }

  /**
   * object_resolve_path: an absolute path walks from the root; a partial
   * one matches wherever it fits in the tree and must fit once. Returns
   * 'ambiguous' when it fits more than once.
   */
  resolve(path: string): QomObject | 'ambiguous' | undefined {
    const parts = path.split('/');
    if (path.startsWith('/')) return walk(this.root, parts.slice(1).filter((p) => p !== ''));
    const found = new Set<QomObject>();
    const visit = (node: QomObject) => {
      const hit = walk(node, parts.filter((p) => p !== ''));
      if (hit) found.add(hit);
      if (node instanceof QomContainer) for (const c of node.children.values()) visit(c);
    };
    visit(this.root);
    if (found.size > 1) return 'ambiguous';
    return found.values().next().value;
  }
}

function walk(from: QomObject, parts: readonly string[]): QomObject | undefined {
  let node: QomObject | undefined = from;
  for (const p of parts) node = node instanceof QomContainer ? node.children.get(p) : undefined;
  return node;
}

/** object_property_set: the property must exist and be writable. */
export function setProperty(obj: QomObject, name: string, value: unknown): void {
  const p = obj.property(name);
  if (!p) throw objectError(`Property '${obj.typeName}.${name}' not found`);
  if (!p.set) throw objectError(`Property '${obj.typeName}.${name}' is not writable`);
  p.set(value);
}

/** object_property_get */
export function getProperty(obj: QomObject, name: string): unknown {
  const p = obj.property(name);
  if (!p) throw objectError(`Property '${obj.typeName}.${name}' not found`);
  if (!p.get) throw objectError(`Property '${obj.typeName}.${name}' is not readable`);
  return p.get();
}
