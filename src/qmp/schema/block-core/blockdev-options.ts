/**
 * BlockdevOptions (qapi/block-core.json 7.2): the flat union blockdev-add
 * takes, discriminated by 'driver', with every variant of QEMU's build in
 * QEMU's declaration order (introspection lists them in that order).
 */
import { bool, type QType, str, union } from '../types.js';
import { BlockdevCacheOptions, BlockdevDetectZeroesOptions, BlockdevDiscardOptions, BlockdevDriver } from './common.js';
import * as F from './options-filter.js';
import * as Fmt from './options-format.js';
import * as N from './options-network.js';
import * as P from './options-protocol.js';
import { type BlockdevDefinition, defineBlockdevOptions } from './ref.js';

export const BlockdevOptions = union(
  'BlockdevOptions',
  {
    driver: BlockdevDriver,
    '*node-name': str,
    '*discard': BlockdevDiscardOptions,
    '*cache': BlockdevCacheOptions,
    '*read-only': bool,
    '*auto-read-only': bool,
    '*force-share': bool,
    '*detect-zeroes': BlockdevDetectZeroesOptions,
  },
  'driver',
  {
    blkdebug: F.BlockdevOptionsBlkdebug,
    blklogwrites: F.BlockdevOptionsBlklogwrites,
    blkverify: F.BlockdevOptionsBlkverify,
    blkreplay: F.BlockdevOptionsBlkreplay,
    bochs: Fmt.BlockdevOptionsGenericFormat,
    cloop: Fmt.BlockdevOptionsGenericFormat,
    compress: Fmt.BlockdevOptionsGenericFormat,
    'copy-before-write': F.BlockdevOptionsCbw,
    'copy-on-read': F.BlockdevOptionsCor,
    dmg: Fmt.BlockdevOptionsGenericFormat,
    file: P.BlockdevOptionsFile,
    ftp: N.BlockdevOptionsCurlFtp,
    ftps: N.BlockdevOptionsCurlFtps,
    gluster: N.BlockdevOptionsGluster,
    host_cdrom: P.BlockdevOptionsFile,
    host_device: P.BlockdevOptionsFile,
    http: N.BlockdevOptionsCurlHttp,
    https: N.BlockdevOptionsCurlHttps,
    iscsi: N.BlockdevOptionsIscsi,
    luks: Fmt.BlockdevOptionsLUKS,
    nbd: N.BlockdevOptionsNbd,
    nfs: N.BlockdevOptionsNfs,
    'null-aio': P.BlockdevOptionsNull,
    'null-co': P.BlockdevOptionsNull,
    nvme: P.BlockdevOptionsNVMe,
    parallels: Fmt.BlockdevOptionsGenericFormat,
    preallocate: F.BlockdevOptionsPreallocate,
    qcow2: Fmt.BlockdevOptionsQcow2,
    qcow: Fmt.BlockdevOptionsQcow,
    qed: Fmt.BlockdevOptionsGenericCOWFormat,
    quorum: F.BlockdevOptionsQuorum,
    raw: Fmt.BlockdevOptionsRaw,
    rbd: N.BlockdevOptionsRbd,
    replication: F.BlockdevOptionsReplication,
    'snapshot-access': Fmt.BlockdevOptionsGenericFormat,
    ssh: N.BlockdevOptionsSsh,
    throttle: F.BlockdevOptionsThrottle,
    vdi: Fmt.BlockdevOptionsGenericFormat,
    vhdx: Fmt.BlockdevOptionsGenericFormat,
    vmdk: Fmt.BlockdevOptionsGenericCOWFormat,
    vpc: Fmt.BlockdevOptionsGenericFormat,
    vvfat: P.BlockdevOptionsVVFAT,
  },
);

// The inferred union type has no index signature; BlockdevDefinition is its open-ended view.
defineBlockdevOptions(BlockdevOptions as unknown as QType<BlockdevDefinition>);
