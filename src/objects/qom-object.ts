import { BlockError } from '../image/errors.js';

/**
 * A property of an object (QOM's ObjectProperty): its QOM type name
 * ('int', 'string', 'bool', a QAPI type such as 'ThrottleLimits', or
 * 'child<T>'), a getter and a setter. Values reaching `set` have already
 * been checked against that type by the monitor (QEMU's visitors).
 */
export interface QomProperty {
  readonly name: string;
  readonly type: string;
  get?(): unknown;
  set?(value: unknown): void;
}

/** An int64 property value as the monitor hands it over (exact when it does not fit a double). */
export type Int64Value = number | bigint;

export const objectError = (message: string) => new BlockError('INVALID_ARGUMENT', message);

/**
 * An object of the QOM tree: a container, a monitor's chardev, or one a
 * user created with object-add / --object (UserCreatable).
 */
export abstract class QomObject {
  abstract readonly typeName: string;

  /**
   * The properties, grouped as QEMU keeps them: the instance's own first,
   * then each class's from the object's own up to TYPE_OBJECT (whose only
   * one is `type`), each group in registration order. qom-list's order
   * comes from this.
   */
  propertyGroups(): QomProperty[][] {
    return [...this.ownGroups(), [{ name: 'type', type: 'string', get: () => this.typeName }]];
  }

  /** The groups below TYPE_OBJECT's (instance properties, then classes from the leaf up). */
  protected abstract ownGroups(): QomProperty[][];

  property(name: string): QomProperty | undefined {
    for (const g of this.propertyGroups()) for (const p of g) if (p.name === name) return p;
    return undefined;
  }

  /** user_creatable_complete: the properties are set; the object takes effect or refuses them. */
  complete(): void | Promise<void> {}

  /** user_creatable_can_be_deleted */
  canBeDeleted(): boolean {
    return true;
  }

  /** instance_finalize: what the object holds goes. */
  finalize(): void {}
}

/** A property holding a plain value until the object is complete. */
export function simpleProperty<T>(name: string, type: string, get: () => T, set?: (v: T) => void): QomProperty {
  return set ? { name, type, get, set: (v) => set(v as T) } : { name, type, get };
}
