import { BlockError } from '../../image/errors.js';
import type { MonitorBackend } from '../../blockdev/monitor-backends.js';
import type { QomObject } from '../../objects/qom-object.js';
import { getProperty, setProperty } from '../../objects/registry.js';
import { QOM_TYPES, qomType, typeImplements } from '../../objects/types.js';
import type { QmpContext } from '../context.js';
import type { CommandTable } from '../dispatch.js';
import { QmpError } from '../error.js';
import { ghashOrder } from '../ghash-order.js';
import { qdictOrder } from '../qdict-order.js';
import { objectAdd, objectDel, QCryptoSecretFormat, qomGet, qomList, qomListProperties, qomListTypes, qomSet, ThrottleLimits } from '../schema/qom.js';
import { bool, int, type QType, str } from '../schema/types.js';

/** The QAPI types QOM properties hold, for checking a qom-set value as the property's visitor would. */
const PROPERTY_TYPES: Record<string, QType<unknown>> = {
  int,
  string: str,
  bool,
  ThrottleLimits,
  QCryptoSecretFormat,
};

/**
 * qom-list's order: QEMU iterates the instance's property table, then each
 * class's from the object's own up to TYPE_OBJECT (each a GLib hash
 * table), and prepends every entry to the list it returns.
 */
function listProperties(obj: QomObject): Array<{ name: string; type: string }> {
  const out: Array<{ name: string; type: string }> = [];
  for (const group of obj.propertyGroups()) {
    const byName = new Map(group.map((p) => [p.name, p]));
    for (const name of ghashOrder(group.map((p) => p.name))) out.push({ name, type: byName.get(name)!.type });
  }
  return out.reverse();
}

function resolve(ctx: QmpContext, path: string, ambiguousIsError: boolean): QomObject {
  const obj = ctx.objects.resolve(path);
  if (obj === 'ambiguous' && ambiguousIsError) throw new QmpError('GenericError', `Path '${path}' is ambiguous`);
  if (!obj || obj === 'ambiguous') throw new QmpError('DeviceNotFound', `Device '${path}' not found`);
  return obj;
}

/** The object-add members that are properties (all but qom-type and id), in the order QEMU sets them (the QDict's). */
export function objectAddProperties(args: Record<string, unknown>): Array<[string, unknown]> {
  const names = Object.keys(args).filter((k) => k !== 'qom-type' && k !== 'id');
  return qdictOrder(names).map((k) => [k, args[k]]);
}

/** A property's QAPI type as the monitor checks values for it. */
function propertyType(obj: QomObject, property: string): QType<unknown> | undefined {
  const p = obj.property(property);
  return p?.set ? PROPERTY_TYPES[p.type] : undefined;
}

/**
 * qom-set of a realized storage device's `drive` (set_drive_helper): its
 * BlockBackend moves to the node named (by node name only, as
 * bdrv_lookup_bs(NULL, name) looks), as tests/image-fleecing does to put a
 * copy-before-write filter above a disk in use.
 */
async function setDeviceDrive(ctx: QmpContext, model: string, backend: MonitorBackend | undefined, value: unknown): Promise<void> {
  const name = str.visit(value, ['drive']);
  // A device that is not a storage device has no such property.
  if (!backend) throw new QmpError('GenericError', `Property '${model}.drive' not found`);
  const node = ctx.graph.get(name);
  if (!node) throw new QmpError('GenericError', `Cannot find device='' nor node-name='${name}'`);
  await backend.blk.replace(node);
}

export function addQomCommands(table: CommandTable<QmpContext>): void {
  table
    .add(qomList, async (a, ctx) => listProperties(resolve(ctx, a.path, true)))
    .add(qomGet, async (a, ctx) => getProperty(resolve(ctx, a.path, false), a.property))
    .add(qomSet, async (a, ctx) => {
      const device = a.path.startsWith('/machine/') ? ctx.machine?.devices.find(a.path) : undefined;
      if (device && a.property === 'drive') return setDeviceDrive(ctx, device.model, device.backend, a.value);
      const obj = resolve(ctx, a.path, false);
      const type = propertyType(obj, a.property);
      setProperty(obj, a.property, type ? type.visit(a.value, [a.property]) : a.value);
    })
    .add(qomListTypes, async (a) =>
      QOM_TYPES.filter((t) => (a.abstract ?? false) || !t.abstract)
        .filter((t) => a.implements === undefined || typeImplements(t.name, a.implements))
        .map((t) => ({ name: t.name, ...(t.abstract ? { abstract: true } : {}), ...(t.parent ? { parent: t.parent } : {}) })),
    )
    .add(qomListProperties, async (a, ctx) => {
      const t = qomType(a.typename);
      if (!t) throw new QmpError('DeviceNotFound', `Class '${a.typename}' not found`);
      if (!typeImplements(a.typename, 'object')) throw new QmpError('GenericError', "Parameter 'typename' expects a QOM type");
      const sample = ctx.objects.sample(a.typename);
      if (!sample) throw new BlockError('UNSUPPORTED', `blockemu does not model the properties of type '${a.typename}'`);
      return listProperties(sample);
    })
    .add(objectAdd, async (a, ctx) => {
      const args = a as Record<string, unknown>;
      await ctx.objects.add(a['qom-type'], a.id, objectAddProperties(args));
    })
    .add(objectDel, async (a, ctx) => ctx.objects.del(a.id));
}

