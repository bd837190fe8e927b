/**
 * qapi/qom.json (7.2, with the authz.json, crypto.json and block-core.json
 * types it names): object-add's ObjectOptions with every variant the
 * Debian build of qemu-storage-daemon has, so arguments are checked as
 * QEMU checks them before the type is even looked at, and the qom-*
 * commands.
 */
import { command } from './command.js';
import { SocketAddress } from './sockets.js';
import { any, array, bool, enumType, int, int32, size, str, struct, uint16, uint32, uint64, union } from './types.js';

const QAuthZListPolicy = enumType('QAuthZListPolicy', ['deny', 'allow']);
const QAuthZListFormat = enumType('QAuthZListFormat', ['exact', 'glob']);
const QAuthZListRule = struct('QAuthZListRule', { match: str, policy: QAuthZListPolicy, '*format': QAuthZListFormat });
const AuthZListProperties = struct('AuthZListProperties', { '*policy': QAuthZListPolicy, '*rules': array(QAuthZListRule) });
const AuthZListFileProperties = struct('AuthZListFileProperties', { filename: str, '*refresh': bool });
const AuthZPAMProperties = struct('AuthZPAMProperties', { service: str });
const AuthZSimpleProperties = struct('AuthZSimpleProperties', { identity: str });

const CanHostSocketcanProperties = struct('CanHostSocketcanProperties', { if: str, canbus: str });
const ColoCompareProperties = struct('ColoCompareProperties', {
  primary_in: str,
  secondary_in: str,
  outdev: str,
  iothread: str,
  '*notify_dev': str,
  '*compare_timeout': uint64,
  '*expired_scan_cycle': uint32,
  '*max_queue_size': uint32,
  '*vnet_hdr_support': bool,
});
const cryptodevBase = { '*queues': uint32 };
const CryptodevBackendProperties = struct('CryptodevBackendProperties', cryptodevBase);
const CryptodevVhostUserProperties = struct('CryptodevVhostUserProperties', { ...cryptodevBase, chardev: str });
const DBusVMStateProperties = struct('DBusVMStateProperties', { addr: str, '*id-list': str });

const NetFilterDirection = enumType('NetFilterDirection', ['all', 'rx', 'tx']);
const NetfilterInsert = enumType('NetfilterInsert', ['before', 'behind']);
const netfilterBase = { netdev: str, '*queue': NetFilterDirection, '*status': str, '*position': str, '*insert': NetfilterInsert };
const NetfilterProperties = struct('NetfilterProperties', netfilterBase);
const FilterBufferProperties = struct('FilterBufferProperties', { ...netfilterBase, interval: uint32 });
const FilterDumpProperties = struct('FilterDumpProperties', { ...netfilterBase, file: str, '*maxlen': uint32 });
const FilterMirrorProperties = struct('FilterMirrorProperties', { ...netfilterBase, outdev: str, '*vnet_hdr_support': bool });
const FilterRedirectorProperties = struct('FilterRedirectorProperties', { ...netfilterBase, '*indev': str, '*outdev': str, '*vnet_hdr_support': bool });
const FilterRewriterProperties = struct('FilterRewriterProperties', { ...netfilterBase, '*vnet_hdr_support': bool });

const InputBarrierProperties = struct('InputBarrierProperties', {
  name: str,
  '*server': str,
  '*port': str,
  '*x-origin': str,
  '*y-origin': str,
  '*width': str,
  '*height': str,
});
const GrabToggleKeys = enumType('GrabToggleKeys', ['ctrl-ctrl', 'alt-alt', 'shift-shift', 'meta-meta', 'scrolllock', 'ctrl-scrolllock']);
const InputLinuxProperties = struct('InputLinuxProperties', { evdev: str, '*grab_all': bool, '*repeat': bool, '*grab-toggle': GrabToggleKeys });

const eventLoopBase = { '*aio-max-batch': int, '*thread-pool-min': int, '*thread-pool-max': int };
export const IothreadProperties = struct('IothreadProperties', { ...eventLoopBase, '*poll-max-ns': int, '*poll-grow': int, '*poll-shrink': int });
export const MainLoopProperties = struct('MainLoopProperties', eventLoopBase);

const HostMemPolicy = enumType('HostMemPolicy', ['default', 'preferred', 'bind', 'interleave']);
const memoryBackendBase = {
  '*dump': bool,
  '*host-nodes': array(uint16),
  '*merge': bool,
  '*policy': HostMemPolicy,
  '*prealloc': bool,
  '*prealloc-threads': uint32,
  '*prealloc-context': str,
  '*share': bool,
  '*reserve': bool,
  size: size,
  '*x-use-canonical-path-for-ramblock-id': bool,
};
const MemoryBackendProperties = struct('MemoryBackendProperties', memoryBackendBase);
const MemoryBackendFileProperties = struct('MemoryBackendFileProperties', {
  ...memoryBackendBase,
  '*align': size,
  '*discard-data': bool,
  'mem-path': str,
  '*pmem': bool,
  '*readonly': bool,
});
const MemoryBackendMemfdProperties = struct('MemoryBackendMemfdProperties', { ...memoryBackendBase, '*hugetlb': bool, '*hugetlbsize': size, '*seal': bool });
const MemoryBackendEpcProperties = struct('MemoryBackendEpcProperties', memoryBackendBase);

const PrManagerHelperProperties = struct('PrManagerHelperProperties', { path: str });
const QtestProperties = struct('QtestProperties', { chardev: str, '*log': str });
const RemoteObjectProperties = struct('RemoteObjectProperties', { fd: str, devid: str });
const VfioUserServerProperties = struct('VfioUserServerProperties', { socket: SocketAddress, device: str });
const rngBase = { '*opened': bool };
const RngProperties = struct('RngProperties', rngBase);
const RngEgdProperties = struct('RngEgdProperties', { ...rngBase, chardev: str });
const RngRandomProperties = struct('RngRandomProperties', { ...rngBase, '*filename': str });

export const QCryptoSecretFormat = enumType('QCryptoSecretFormat', ['raw', 'base64']);
const secretCommon = { '*loaded': bool, '*format': QCryptoSecretFormat, '*keyid': str, '*iv': str };
export const SecretProperties = struct('SecretProperties', { ...secretCommon, '*data': str, '*file': str });
const SecretKeyringProperties = struct('SecretKeyringProperties', { ...secretCommon, serial: int32 });

const SevGuestProperties = struct('SevGuestProperties', {
  '*sev-device': str,
  '*dh-cert-file': str,
  '*session-file': str,
  '*policy': uint32,
  '*handle': uint32,
  '*cbitpos': uint32,
  'reduced-phys-bits': uint32,
  '*kernel-hashes': bool,
});
const ThreadContextProperties = struct('ThreadContextProperties', { '*cpu-affinity': array(uint16), '*node-affinity': array(uint16) });

const limit = int;
export const ThrottleLimits = struct('ThrottleLimits', {
  '*iops-total': limit,
  '*iops-total-max': limit,
  '*iops-total-max-length': limit,
  '*iops-read': limit,
  '*iops-read-max': limit,
  '*iops-read-max-length': limit,
  '*iops-write': limit,
  '*iops-write-max': limit,
  '*iops-write-max-length': limit,
  '*bps-total': limit,
  '*bps-total-max': limit,
  '*bps-total-max-length': limit,
  '*bps-read': limit,
  '*bps-read-max': limit,
  '*bps-read-max-length': limit,
  '*bps-write': limit,
  '*bps-write-max': limit,
  '*bps-write-max-length': limit,
  '*iops-size': limit,
});
export const ThrottleGroupProperties = struct('ThrottleGroupProperties', {
  '*limits': ThrottleLimits,
  '*x-iops-total': int,
  '*x-iops-total-max': int,
  '*x-iops-total-max-length': int,
  '*x-iops-read': int,
  '*x-iops-read-max': int,
  '*x-iops-read-max-length': int,
  '*x-iops-write': int,
  '*x-iops-write-max': int,
  '*x-iops-write-max-length': int,
  '*x-bps-total': int,
  '*x-bps-total-max': int,
  '*x-bps-total-max-length': int,
  '*x-bps-read': int,
  '*x-bps-read-max': int,
  '*x-bps-read-max-length': int,
  '*x-bps-write': int,
  '*x-bps-write-max': int,
  '*x-bps-write-max-length': int,
  '*x-iops-size': int,
});

const QCryptoTLSCredsEndpoint = enumType('QCryptoTLSCredsEndpoint', ['client', 'server']);
const tlsBase = { '*verify-peer': bool, '*dir': str, '*endpoint': QCryptoTLSCredsEndpoint, '*priority': str };
const TlsCredsProperties = struct('TlsCredsProperties', tlsBase);
const TlsCredsAnonProperties = struct('TlsCredsAnonProperties', { ...tlsBase, '*loaded': bool });
const TlsCredsPskProperties = struct('TlsCredsPskProperties', { ...tlsBase, '*loaded': bool, '*username': str });
const TlsCredsX509Properties = struct('TlsCredsX509Properties', { ...tlsBase, '*loaded': bool, '*sanity-check': bool, '*passwordid': str });

export const ObjectType = enumType('ObjectType', [
  'authz-list',
  'authz-listfile',
  'authz-pam',
  'authz-simple',
  'can-bus',
  'can-host-socketcan',
  'colo-compare',
  'cryptodev-backend',
  'cryptodev-backend-builtin',
  'cryptodev-backend-lkcf',
  'cryptodev-vhost-user',
  'dbus-vmstate',
  'filter-buffer',
  'filter-dump',
  'filter-mirror',
  'filter-redirector',
  'filter-replay',
  'filter-rewriter',
  'input-barrier',
  'input-linux',
  'iothread',
  'main-loop',
  'memory-backend-epc',
  'memory-backend-file',
  'memory-backend-memfd',
  'memory-backend-ram',
  'pef-guest',
  'pr-manager-helper',
  'qtest',
  'rng-builtin',
  'rng-egd',
  'rng-random',
  'secret',
  'secret_keyring',
  'sev-guest',
  'thread-context',
  's390-pv-guest',
  'throttle-group',
  'tls-creds-anon',
  'tls-creds-psk',
  'tls-creds-x509',
  'tls-cipher-suites',
  'x-remote-object',
  'x-vfio-user-server',
]);

export const ObjectOptions = union('ObjectOptions', { 'qom-type': ObjectType, id: str }, 'qom-type', {
  'authz-list': AuthZListProperties,
  'authz-listfile': AuthZListFileProperties,
  'authz-pam': AuthZPAMProperties,
  'authz-simple': AuthZSimpleProperties,
  'can-host-socketcan': CanHostSocketcanProperties,
  'colo-compare': ColoCompareProperties,
  'cryptodev-backend': CryptodevBackendProperties,
  'cryptodev-backend-builtin': CryptodevBackendProperties,
  'cryptodev-backend-lkcf': CryptodevBackendProperties,
  'cryptodev-vhost-user': CryptodevVhostUserProperties,
  'dbus-vmstate': DBusVMStateProperties,
  'filter-buffer': FilterBufferProperties,
  'filter-dump': FilterDumpProperties,
  'filter-mirror': FilterMirrorProperties,
  'filter-redirector': FilterRedirectorProperties,
  'filter-replay': NetfilterProperties,
  'filter-rewriter': FilterRewriterProperties,
  'input-barrier': InputBarrierProperties,
  'input-linux': InputLinuxProperties,
  iothread: IothreadProperties,
  'main-loop': MainLoopProperties,
  'memory-backend-epc': MemoryBackendEpcProperties,
  'memory-backend-file': MemoryBackendFileProperties,
  'memory-backend-memfd': MemoryBackendMemfdProperties,
  'memory-backend-ram': MemoryBackendProperties,
  'pr-manager-helper': PrManagerHelperProperties,
  qtest: QtestProperties,
  'rng-builtin': RngProperties,
  'rng-egd': RngEgdProperties,
  'rng-random': RngRandomProperties,
  secret: SecretProperties,
  secret_keyring: SecretKeyringProperties,
  'sev-guest': SevGuestProperties,
  'thread-context': ThreadContextProperties,
  'throttle-group': ThrottleGroupProperties,
  'tls-creds-anon': TlsCredsAnonProperties,
  'tls-creds-psk': TlsCredsPskProperties,
  'tls-creds-x509': TlsCredsX509Properties,
  'tls-cipher-suites': TlsCredsProperties,
  'x-remote-object': RemoteObjectProperties,
  'x-vfio-user-server': VfioUserServerProperties,
});

export const ObjectPropertyInfo = struct('ObjectPropertyInfo', { name: str, type: str, '*description': str, '*default-value': any });
export const ObjectTypeInfo = struct('ObjectTypeInfo', { name: str, '*abstract': bool, '*parent': str });

export const qomList = command('qom-list', { args: { path: str }, returns: array(ObjectPropertyInfo) });
export const qomGet = command('qom-get', { args: { path: str, property: str }, returns: any });
export const qomSet = command('qom-set', { args: { path: str, property: str, value: any } });
export const qomListTypes = command('qom-list-types', { args: { '*implements': str, '*abstract': bool }, returns: array(ObjectTypeInfo) });
export const qomListProperties = command('qom-list-properties', { args: { typename: str }, returns: array(ObjectPropertyInfo) });
export const objectAdd = command('object-add', { args: ObjectOptions });
export const objectDel = command('object-del', { args: { id: str } });

export const QOM_COMMANDS = [qomList, qomGet, qomSet, qomListTypes, qomListProperties, objectAdd, objectDel] as const;
