/**
 * qemu-system-x86_64's command line as softmmu/vl.c reads it: every option
 * is one dash or two (`-drive` and `--drive` alike), its argument the next
 * word (never `-opt=value`), options kept in order. A word that is not an
 * option is a disk image for QEMU (-hda); blockemu refuses it.
 */
import { ArgsError } from './daemon-args.js';

export interface SystemOption {
  /** The option as QEMU knows it (`M` and `machine` are one option there; kept apart here only by spelling). */
  name: string;
  /** How it was written, for messages ("-drive", "--drive"). */
  spelled: string;
  value?: string;
  /** Where messages say the option was, when not its spelling and value (-hdb FILE stands for a -drive). */
  location?: string;
}

/** The options blockemu system takes, and whether each has an argument. */
const OPTIONS: Record<string, boolean> = {
  accel: true,
  blockdev: true,
  chardev: true,
  device: true,
  display: true,
  drive: true,
  h: false,
  help: false,
  incoming: true,
  loadvm: true,
  m: true,
  M: true,
  machine: true,
  mon: true,
  monitor: true,
  name: true,
  'no-reboot': false,
  'no-shutdown': false,
  nodefaults: false,
  nographic: false,
  object: true,
  preconfig: false,
  qmp: true,
  'qmp-pretty': true,
  qtest: true,
  S: false,
  serial: true,
  snapshot: false,
  set: true,
  vga: true,
  version: false,
};

/**
 * Options of qemu-system that blockemu knows of and does not implement: a
 * storage-only process has no CPUs, memory, network or screen. Refused with
 * a message saying so rather than QEMU's "invalid option".
 */
const NOT_STORAGE = new Set([
  'append', 'bios', 'boot', 'cpu', 'daemonize', 'enable-kvm', 'global',
  'initrd', 'kernel', 'net', 'netdev', 'nic', 'numa', 'pidfile',
  'rtc', 'smp', 'trace', 'usb', 'usbdevice', 'vnc',
]);

/** -hda … -hdd, -cdrom, -fda/-fdb: a -drive with these options and the file (vl.c's drive_add with HD_OPTS, CDROM_OPTS, FD_OPTS). */
const LEGACY_DISKS: Record<string, string> = {
  hda: 'index=0,media=disk',
  hdb: 'index=1,media=disk',
  hdc: 'index=2,media=disk',
  hdd: 'index=3,media=disk',
  cdrom: 'index=2,media=cdrom',
  fda: 'if=floppy,index=0',
  fdb: 'if=floppy,index=1',
};

/** The -drive a legacy disk option stands for; the file name is taken whole (commas doubled for the option parser). */
function diskDrive(option: string, file: string): string {
  return `${LEGACY_DISKS[option]!},file=${file.replaceAll(',', ',,')}`;
}

export function parseSystemArgs(argv: readonly string[]): SystemOption[] {
  const out: SystemOption[] = [];
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    // A word that is no option is the first hard disk, as -hda (iotest 286).
    if (!word.startsWith('-') || word === '-') {
      out.push({ name: 'drive', spelled: word, value: diskDrive('hda', word), location: word });
      continue;
    }
    const spelled = word;
    const name = word.slice(word.startsWith('--') ? 2 : 1);
    if (LEGACY_DISKS[name] !== undefined) {
      if (i + 1 >= argv.length) throw new ArgsError(`${spelled}: requires an argument`);
      const file = argv[++i]!;
      out.push({ name: 'drive', spelled, value: diskDrive(name, file), location: `${spelled} ${file}` });
      continue;
    }
    const hasArg = OPTIONS[name];
    if (hasArg === undefined) {
      if (NOT_STORAGE.has(name)) throw new ArgsError(`${spelled}: not supported by blockemu system (a storage-only stand-in for qemu-system-x86_64)`);
      throw new ArgsError(`${spelled}: invalid option`);
    }
    if (!hasArg) {
      out.push({ name, spelled });
      continue;
    }
    if (i + 1 >= argv.length) throw new ArgsError(`${spelled}: requires an argument`);
    out.push({ name, spelled, value: argv[++i]! });
  }
  return out;
}
