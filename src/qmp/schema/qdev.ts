/** qapi/qdev.json (7.2): the device hot-plug commands and their event (`blockemu system` only). */
import { command, event } from './command.js';
import { openArgs, str } from './types.js';

/** 'gen': false: any property of the device model may come along (QEMU hands the dict to qdev as it is). */
export const deviceAdd = command('device_add', {
  args: openArgs('q_obj_device_add-arg', { driver: str, '*bus': str, '*id': str }),
  features: ['json-cli', 'json-cli-hotplug'],
});
export const deviceDel = command('device_del', { args: { id: str } });

export const QDEV_COMMANDS = [deviceAdd, deviceDel] as const;

export const deviceDeletedEvent = event('DEVICE_DELETED', { '*device': str, path: str });
