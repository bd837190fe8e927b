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
  M: true,
  machine: true,
  mon: true,
  monitor: true,
  nodefaults: false,
  nographic: false,
  object: true,
  qmp: true,
  'qmp-pretty': true,
  qtest: true,
  S: false,
  serial: true,
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
  'append', 'bios', 'boot', 'cdrom', 'cpu', 'daemonize', 'enable-kvm', 'fda', 'fdb', 'global', 'hda', 'hdb', 'hdc', 'hdd', 'incoming',
  'initrd', 'kernel', 'loadvm', 'm', 'name', 'net', 'netdev', 'nic', 'no-reboot', 'no-shutdown', 'numa', 'pidfile',
  'rtc', 'smp', 'snapshot', 'trace', 'usb', 'usbdevice', 'vnc',
]);

export function parseSystemArgs(argv: readonly string[]): SystemOption[] {
  const out: SystemOption[] = [];
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    if (!word.startsWith('-') || word === '-') throw new ArgsError(`${word}: disk images given without an option are not supported by blockemu system; use -drive or -blockdev`);
    const spelled = word;
    const name = word.slice(word.startsWith('--') ? 2 : 1);
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
