/** Format names QEMU 7.2 knows (bdrv_find_format succeeds); blockemu opens only raw and qcow2 of them. */
export const QEMU_FORMATS = new Set([
  'blkdebug', 'blklogwrites', 'blkverify', 'bochs', 'cloop', 'compress', 'copy-before-write', 'copy-on-read', 'dmg', 'file', 'ftp', 'ftps',
  'host_cdrom', 'host_device', 'http', 'https', 'luks', 'nbd', 'null-aio', 'null-co', 'nvme', 'parallels', 'preallocate', 'qcow', 'qcow2',
  'qed', 'quorum', 'raw', 'replication', 'snapshot-access', 'ssh', 'throttle', 'vdi', 'vhdx', 'vmdk', 'vpc', 'vvfat',
]);
