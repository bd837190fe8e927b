/**
 * The QOM types qemu-storage-daemon 7.2 (Debian build) registers, as
 * `qom-list-types abstract=true` lists them (that order), with the
 * interfaces each implements directly. qom-list-types, qom-list-properties
 * and object-add's "invalid object type" all answer from this table, so a
 * type QEMU's daemon does not have is unknown here too.
 */
export interface QomType {
  name: string;
  parent?: string;
  abstract?: boolean;
  interfaces?: readonly string[];
}

const UC = ['user-creatable'] as const;

export const QOM_TYPES: readonly QomType[] = [
  { name: 'qio-channel-null', parent: 'qio-channel' },
  { name: 'authz-simple', parent: 'authz', interfaces: UC },
  { name: 'secret_common', parent: 'object', abstract: true, interfaces: UC },
  { name: 'qio-channel-socket', parent: 'qio-channel' },
  { name: 'fw_cfg-data-generator', parent: 'interface', abstract: true },
  { name: 'container', parent: 'object' },
  { name: 'interface', abstract: true },
  { name: 'tls-creds-anon', parent: 'tls-creds', interfaces: UC },
  { name: 'pr-manager-helper', parent: 'pr-manager' },
  { name: 'iothread', parent: 'event-loop-base' },
  { name: 'secret', parent: 'secret_common' },
  { name: 'authz', parent: 'object', abstract: true },
  { name: 'chardev-serial', parent: 'chardev-fd' },
  { name: 'qio-channel', parent: 'object', abstract: true },
  { name: 'chardev-mux', parent: 'chardev' },
  { name: 'tls-creds-psk', parent: 'tls-creds', interfaces: UC },
  { name: 'tls-creds', parent: 'object', abstract: true },
  { name: 'qio-channel-file', parent: 'qio-channel' },
  { name: 'qio-channel-command', parent: 'qio-channel' },
  { name: 'qio-channel-websock', parent: 'qio-channel' },
  { name: 'chardev-pipe', parent: 'chardev-fd' },
  { name: 'main-loop', parent: 'event-loop-base' },
  { name: 'chardev-parallel', parent: 'chardev' },
  { name: 'chardev-fd', parent: 'chardev', abstract: true },
  { name: 'qio-channel-tls', parent: 'qio-channel' },
  { name: 'qio-net-listener', parent: 'object' },
  { name: 'authz-list-file', parent: 'authz', interfaces: UC },
  { name: 'pr-manager', parent: 'object', abstract: true, interfaces: UC },
  { name: 'chardev-null', parent: 'chardev' },
  { name: 'chardev-ringbuf', parent: 'chardev' },
  { name: 'event-loop-base', parent: 'object', abstract: true, interfaces: UC },
  { name: 'qio-dns-resolver', parent: 'object' },
  { name: 'authz-list', parent: 'authz', interfaces: UC },
  { name: 'chardev-stdio', parent: 'chardev-fd' },
  { name: 'chardev', parent: 'object', abstract: true },
  { name: 'user-creatable', parent: 'interface', abstract: true },
  { name: 'chardev-socket', parent: 'chardev' },
  { name: 'chardev-file', parent: 'chardev-fd' },
  { name: 'chardev-memory', parent: 'chardev-ringbuf' },
  { name: 'qio-channel-buffer', parent: 'qio-channel' },
  { name: 'object', abstract: true },
  { name: 'chardev-udp', parent: 'chardev' },
  { name: 'tls-creds-x509', parent: 'tls-creds', interfaces: UC },
  { name: 'tls-cipher-suites', parent: 'tls-creds', interfaces: ['user-creatable', 'fw_cfg-data-generator'] },
  { name: 'chardev-pty', parent: 'chardev' },
  { name: 'thread-context', parent: 'object', interfaces: UC },
  { name: 'secret_keyring', parent: 'secret_common' },
  { name: 'throttle-group', parent: 'object', interfaces: UC },
];

const BY_NAME = new Map(QOM_TYPES.map((t) => [t.name, t]));

export function qomType(name: string): QomType | undefined {
  return BY_NAME.get(name);
}

/** object_class_dynamic_cast: `name` is `target`, descends from it, or implements it (interfaces are inherited). */
export function typeImplements(name: string, target: string): boolean {
  for (let t = BY_NAME.get(name); t; t = t.parent ? BY_NAME.get(t.parent) : undefined) {
    if (t.name === target || t.interfaces?.includes(target)) return true;
  }
  return false;
}
