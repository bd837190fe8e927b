/**
 * The human monitor's commands (QEMU's hmp-commands.hx and
 * hmp-commands-info.hx, the block layer's share of them): one row per
 * command, parsed and run by run.ts, whether typed at a `-monitor` or sent
 * as QMP's human-monitor-command.
 */
import type { HmpCommand } from './command.js';
import { viaQmp } from './command.js';
import { infoBlock, infoBlockJobs, infoBlockstats } from './block-info.js';
import { blockSetIoThrottle, commit, driveBackup, driveMirror, snapshotBlkdev } from './block-ops.js';
import { infoStatus, infoVersion, jobArgs, quit } from './control.js';
import { driveAdd } from './drive-add.js';
import { driveDel } from './drive-del.js';
import { nbdServerAdd, nbdServerRemove, nbdServerStart } from './nbd.js';
import { hmpQemuIo } from './qemu-io.js';
import { infoMigrate, infoMigrateCapabilities, migrate, migrateSetCapability } from './migration.js';
import { delvm, infoSnapshots, loadvm, savevm } from './vm-snapshots.js';

const INFO: readonly HmpCommand[] = [
  { name: 'block', args: 'nodes:-n,verbose:-v,device:B?', params: '[-n] [-v] [device]', help: 'show info of one block device or all block devices (-n: show named nodes; -v: show details)', run: infoBlock },
  { name: 'block-jobs', args: '', params: '', help: 'show progress of ongoing block device operations', run: infoBlockJobs },
  { name: 'blockstats', args: '', params: '', help: 'show block device statistics', run: infoBlockstats },
  { name: 'migrate', args: '', params: '', help: 'show migration status', run: infoMigrate },
  { name: 'migrate_capabilities', args: '', params: '', help: 'show current migration capabilities', run: infoMigrateCapabilities },
  { name: 'snapshots', args: '', params: '', help: 'show the currently saved VM snapshots', run: infoSnapshots },
  { name: 'status', args: '', params: '', help: 'show the current VM status (running|paused)', run: infoStatus },
  { name: 'version', args: '', params: '', help: 'show the version of QEMU', run: infoVersion },
];

export const HMP_COMMANDS: readonly HmpCommand[] = [
  { name: 'help|?', args: 'name:S?', params: '[cmd]', help: 'show the help', run: async (ctx, a) => (await import('./run.js')).printHelp(ctx, a['name'] === undefined ? [] : String(a['name']).trim().split(/\s+/)) },
  { name: 'quit|q', args: '', params: '', help: 'quit the emulator', run: quit },
  { name: 'commit', args: 'device:B', params: 'device|all', help: 'commit changes to the disk images (if -snapshot is used) or backing files', run: commit },
  { name: 'block_resize', args: 'device:B,size:o', params: 'device size', help: 'resize a block image', run: viaQmp('block_resize', (a) => ({ device: a['device'], size: a['size'] })) },
  { name: 'block_stream', args: 'device:B,speed:o?,base:s?', params: 'device [speed [base]]', help: 'copy data from a backing file into a block device', run: viaQmp('block-stream', (a) => ({ device: a['device'], ...(a['speed'] !== undefined ? { speed: a['speed'] } : {}), ...(a['base'] !== undefined ? { base: a['base'] } : {}), 'on-error': 'report' })) },
  { name: 'block_job_set_speed', args: 'device:B,speed:o', params: 'device speed', help: 'set maximum speed for a background block operation', run: viaQmp('block-job-set-speed', (a) => ({ device: a['device'], speed: a['speed'] })) },
  { name: 'block_job_cancel', args: 'force:-f,device:B', params: '[-f] device', help: 'stop an active background block operation (use -f\n\t\t\t to force cancellation of a paused job)', run: viaQmp('block-job-cancel', (a) => ({ device: a['device'], force: a['force'] === true })) },
  { name: 'block_job_complete', args: 'device:B', params: 'device', help: 'stop an active background block operation', run: viaQmp('block-job-complete', jobArgs) },
  { name: 'block_job_pause', args: 'device:B', params: 'device', help: 'pause an active background block operation', run: viaQmp('block-job-pause', jobArgs) },
  { name: 'block_job_resume', args: 'device:B', params: 'device', help: 'resume a paused background block operation', run: viaQmp('block-job-resume', jobArgs) },
  { name: 'eject', args: 'force:-f,device:B', params: '[-f] device', help: 'eject a removable medium (use -f to force it)', run: viaQmp('eject', (a) => ({ device: a['device'], force: a['force'] === true })) },
  { name: 'system_reset', args: '', params: '', help: 'reset the system', run: viaQmp('system_reset', () => ({})) },
  { name: 'system_powerdown', args: '', params: '', help: 'send system power down event', run: viaQmp('system_powerdown', () => ({})) },
  { name: 'snapshot_blkdev', args: 'reuse:-n,device:B,snapshot-file:s?,format:s?', params: '[-n] device [new-image-file] [format]', help: 'initiates a live snapshot\n\t\t\tof device. If a new image file is specified, the\n\t\t\tnew image file will become the new root image.\n\t\t\tIf format is specified, the snapshot file will\n\t\t\tbe created in that format.\n\t\t\tThe default format is qcow2.  The -n flag requests QEMU\n\t\t\tto reuse the image found in new-image-file, instead of\n\t\t\trecreating it from scratch.', run: snapshotBlkdev },
  { name: 'snapshot_blkdev_internal', args: 'device:B,name:s', params: 'device name', help: 'take an internal snapshot of device.\n\t\t\tThe format of the image used by device must\n\t\t\tsupport it, such as qcow2.\n\t\t\t', run: viaQmp('blockdev-snapshot-internal-sync', (a) => ({ device: a['device'], name: a['name'] })) },
  {
    name: 'snapshot_delete_blkdev_internal',
    args: 'device:B,name:s,id:s?',
    params: 'device name [id]',
    help: 'delete an internal snapshot of device.\n\t\t\tIf id is specified, qemu will try delete\n\t\t\tthe snapshot matching both id and name.\n\t\t\tThe format of the image used by device must\n\t\t\tsupport it, such as qcow2.\n\t\t\t',
    run: viaQmp('blockdev-snapshot-delete-internal-sync', (a) => ({ device: a['device'], name: a['name'], ...(a['id'] !== undefined ? { id: a['id'] } : {}) })),
  },
  { name: 'drive_mirror', args: 'reuse:-n,full:-f,device:B,target:s,format:s?', params: '[-n] [-f] device target [format]', help: 'initiates live storage\n\t\t\tmigration for a device. The device\'s contents are\n\t\t\tcopied to the new image file, including data that\n\t\t\tis written after the command is started.\n\t\t\tThe -n flag requests QEMU to reuse the image found\n\t\t\tin new-image-file, instead of recreating it from scratch.\n\t\t\tThe -f flag requests QEMU to copy the whole disk,\n\t\t\tso that the result does not need a backing file.\n\t\t\t', run: driveMirror },
  { name: 'drive_backup', args: 'reuse:-n,full:-f,compress:-c,device:B,target:s,format:s?', params: '[-n] [-f] [-c] device target [format]', help: 'initiates a point-in-time\n\t\t\tcopy for a device. The device\'s contents are\n\t\t\tcopied to the new image file, excluding data that\n\t\t\tis written after the command is started.\n\t\t\tThe -n flag requests QEMU to reuse the image found\n\t\t\tin new-image-file, instead of recreating it from scratch.\n\t\t\tThe -f flag requests QEMU to copy the whole disk,\n\t\t\tso that the result does not need a backing file.\n\t\t\tThe -c flag requests QEMU to compress backup data\n\t\t\t(if the target format supports it).\n\t\t\t', run: driveBackup },
  { name: 'drive_add', args: 'node:-n,pci_addr:s,opts:s', params: '[-n] [[<domain>:]<bus>:]<slot>\n[file=file][,if=type][,bus=n]\n[,unit=m][,media=d][,index=i]\n[,snapshot=on|off][,cache=on|off]\n[,readonly=on|off][,copy-on-read=on|off]', help: 'add drive to PCI storage controller', run: driveAdd },
  { name: 'drive_del', args: 'id:B', params: 'device', help: 'remove host block device', run: driveDel },
  { name: 'change', args: 'device:B,target:F,arg:s?,read-only-mode:s?,force:-f', params: 'device [-f] filename [format [read-only-mode]]', help: 'change a removable medium, optional format, use -f to force the operation', run: viaQmp('blockdev-change-medium', (a) => ({ device: a['device'], filename: a['target'], ...(a['arg'] !== undefined ? { format: a['arg'] } : {}), ...(a['read-only-mode'] !== undefined ? { 'read-only-mode': a['read-only-mode'] } : {}), force: a['force'] === true })) },
  { name: 'stop|s', args: '', params: '', help: 'stop emulation', run: viaQmp('stop', () => ({})) },
  { name: 'cont|c', args: '', params: '', help: 'resume emulation', run: viaQmp('cont', () => ({})) },
  { name: 'migrate', args: 'detach:-d,blk:-b,inc:-i,resume:-r,uri:s', params: '[-d] [-b] [-i] [-r] uri', help: 'migrate to URI (using -d to not wait for completion)\n\t\t -b for migration without shared storage with full copy of disk\n\t\t -i for migration without shared storage with incremental copy of disk (base image shared between src and destination)\n\t\t -r to resume a paused migration', run: migrate },
  { name: 'migrate_cancel', args: '', params: '', help: 'cancel the current VM migration', run: viaQmp('migrate_cancel', () => ({})) },
  { name: 'migrate_incoming', args: 'uri:s', params: 'uri', help: 'Continue an incoming migration from an -incoming defer', run: viaQmp('migrate-incoming', (a) => ({ uri: a['uri'] })) },
  { name: 'migrate_set_capability', args: 'capability:s,state:b', params: 'capability state', help: 'Enable/Disable the usage of a capability for migration', run: migrateSetCapability },
  { name: 'savevm', args: 'name:s?', params: 'tag', help: 'save a VM snapshot. If no tag is provided, a new snapshot is created', run: savevm },
  { name: 'loadvm', args: 'name:s', params: 'tag', help: 'restore a VM snapshot from its tag', run: loadvm },
  { name: 'delvm', args: 'name:s', params: 'tag', help: 'delete a VM snapshot from its tag', run: delvm },
  { name: 'nbd_server_start', args: 'all:-a,writable:-w,uri:s', params: 'nbd_server_start [-a] [-w] host:port', help: 'serve block devices on the given host and port', run: nbdServerStart },
  { name: 'nbd_server_add', args: 'writable:-w,device:B,name:s?', params: 'nbd_server_add [-w] device [name]', help: 'export a block device via NBD', run: nbdServerAdd },
  { name: 'nbd_server_remove', args: 'force:-f,name:s', params: 'nbd_server_remove [-f] name', help: 'remove an export previously exposed via NBD', run: nbdServerRemove },
  { name: 'nbd_server_stop', args: '', params: 'nbd_server_stop', help: 'stop serving block devices using the NBD protocol', run: viaQmp('nbd-server-stop', () => ({})) },
  { name: 'block_set_io_throttle', args: 'device:B,bps:l,bps_rd:l,bps_wr:l,iops:l,iops_rd:l,iops_wr:l', params: 'device bps bps_rd bps_wr iops iops_rd iops_wr', help: 'change I/O throttle limits for a block drive', run: blockSetIoThrottle },
  { name: 'qemu-io', args: 'qdev:-d,device:B,command:s', params: '[-d] [device] "[command]"', help: 'run a qemu-io command on a block device\n\t\t\t-d: [device] is a device ID rather than a drive ID or node name', run: hmpQemuIo },
  { name: 'info', args: 'item:s?', params: '[subcommand]', help: 'show various information about the system state', sub: INFO, run: (ctx) => { for (const c of INFO) ctx.out(`info ${c.name} ${c.params} -- ${c.help}\n`); } },
];
