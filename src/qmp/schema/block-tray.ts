/** The removable-medium commands and event of qapi/block.json 7.2 (`blockemu system` only: the storage daemon has no devices). */
import { command, event } from './command.js';
import { bool, enumType, str } from './types.js';

export const eject = command('eject', { args: { '*device': str, '*id': str, '*force': bool } });
export const blockdevOpenTray = command('blockdev-open-tray', { args: { '*device': str, '*id': str, '*force': bool } });
export const blockdevCloseTray = command('blockdev-close-tray', { args: { '*device': str, '*id': str } });
export const blockdevRemoveMedium = command('blockdev-remove-medium', { args: { id: str } });
export const blockdevInsertMedium = command('blockdev-insert-medium', { args: { id: str, 'node-name': str } });

export const BlockdevChangeReadOnlyMode = enumType('BlockdevChangeReadOnlyMode', ['retain', 'read-only', 'read-write']);
export const blockdevChangeMedium = command('blockdev-change-medium', {
  args: { '*device': str, '*id': str, filename: str, '*format': str, '*force': bool, '*read-only-mode': BlockdevChangeReadOnlyMode },
});

export const TRAY_COMMANDS = [eject, blockdevOpenTray, blockdevCloseTray, blockdevRemoveMedium, blockdevInsertMedium, blockdevChangeMedium] as const;

export const deviceTrayMovedEvent = event('DEVICE_TRAY_MOVED', { device: str, id: str, 'tray-open': bool });
