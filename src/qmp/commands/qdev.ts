import { addDevice, deleteDevice } from '../../machine/hotplug.js';
import type { Machine } from '../../machine/run-state.js';
import type { QmpContext } from '../context.js';
import type { CommandTable } from '../dispatch.js';
import { QmpError } from '../error.js';
import { deviceAdd, deviceDel } from '../schema/qdev.js';

function machine(ctx: QmpContext): Machine {
  if (!ctx.machine) throw new QmpError('CommandNotFound', 'The command is only available in blockemu system');
  return ctx.machine;
}

/**
 * qemu_opts_from_qdict: device_add's arguments become the device's
 * options as text (numbers written out, booleans on/off); other values,
 * and an id that is not a string, are dropped, as QEMU drops them.
 */
export function deviceOptions(args: Record<string, unknown>): Map<string, string> {
  const o = new Map<string, string>();
  for (const [k, v] of Object.entries(args)) {
    if (k === 'id' && typeof v !== 'string') continue;
    if (typeof v === 'string') o.set(k, v);
    else if (typeof v === 'number' || typeof v === 'bigint') o.set(k, String(v));
    else if (typeof v === 'boolean') o.set(k, v ? 'on' : 'off');
  }
  return o;
}

/** The hot-plug commands of qapi/qdev.json; the machine layer (src/machine/hotplug.ts) does the work. */
export function addQdevCommands(table: CommandTable<QmpContext>): void {
  table
    .add(deviceAdd, async (a, ctx) => addDevice(machine(ctx).devices, ctx.graph, deviceOptions(a), (id) => ctx.objects.find(id)?.typeName === 'iothread'))
    .add(deviceDel, async (a, ctx) => {
      const m = machine(ctx);
      deleteDevice(m.devices, a.id, m.clockStarted);
    });
}
