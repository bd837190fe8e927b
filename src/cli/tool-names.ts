/**
 * The names the tools print before their messages. By default our own
 * ("blockemu img: …"); with BLOCKEMU_TOOL_NAMES=qemu the names of the QEMU
 * tools they stand in for ("qemu-img: …"), so that harnesses comparing
 * output as text — QEMU's iotests above all — can run them unmodified.
 */
const asQemu = process.env.BLOCKEMU_TOOL_NAMES === 'qemu';

export const IMG_PROG = asQemu ? 'qemu-img' : 'blockemu img';
export const IO_PROG = asQemu ? 'qemu-io' : 'blockemu io';
export const SYSTEM_PROG = asQemu ? 'qemu-system-x86_64' : 'blockemu system';
export const DAEMON_PROG = asQemu ? 'qemu-storage-daemon' : 'blockemu daemon';
