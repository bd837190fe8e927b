/**
 * blkdebug's `config` file (read_config: `[inject-error]` and `[set-state]`
 * sections of `key = "value"` lines) and blkdebug:CONF:IMAGE file names as
 * drive-mirror's target (iotest 229), played on qemu-storage-daemon and
 * blockemu: the job's events and its pause on the injected error must be
 * equal.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compareSessions, file } from '../helpers/qmp-session.js';
import { qemu, qemuImg, qemuIo } from '../helpers/qemu.js';

async function setup(dir: string): Promise<void> {
  const ok = async (p: Promise<{ code: number; stderr: string }>) => expect((await p).stderr).toBe('');
  await ok(qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'src.qcow2'), '2M'));
  await ok(qemuIo('-c', 'write -q 0 2M', join(dir, 'src.qcow2')));
  await ok(qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'dst.qcow2'), '2M'));
  await writeFile(
    join(dir, 'blkdebug.conf'),
    ['# the first write to the target fails', '[set-state]', 'event = "none"', 'state = "1"', 'new_state = "2"', '', '[inject-error]', 'event = "write_aio"', 'state = "2"', 'errno = "5"', 'once = "on"', ''].join('\n'),
  );
}

describe.skipIf(!qemu.available || !qemu.storageDaemon)('blkdebug config files', () => {
  it('drive-mirror to blkdebug:CONF:IMAGE pauses on the injected write error; a missing config file is refused', async () => {
    const log = await compareSessions(setup, [
      ['blockdev-add', { driver: 'qcow2', 'node-name': 'src', file: file('src.qcow2') }],
      ['blockdev-add', { driver: 'blkdebug', 'node-name': 'nope', config: '${DIR}/missing.conf', image: file('dst.qcow2') }],
      ['drive-mirror', { 'job-id': 'j', device: 'src', target: 'blkdebug:${DIR}/blkdebug.conf:${DIR}/dst.qcow2', format: 'qcow2', sync: 'full', mode: 'existing', 'on-target-error': 'stop' }],
      { waitJob: 'j', status: 'paused' },
      ['block-job-cancel', { device: 'j', force: true }],
      { waitJob: 'j' },
    ]);
    expect(JSON.stringify(log[1])).toContain('Could not read blkdebug config file');
  }, 60_000);

  it('an empty list of rules is an option blkdebug does not take (qdict_flatten leaves it whole), named after a missing image or config file', async () => {
    const log = await compareSessions(setup, [
      ['blockdev-add', { driver: 'blkdebug', 'node-name': 'a', 'inject-error': [], image: file('dst.qcow2') }],
      ['blockdev-add', { driver: 'blkdebug', 'node-name': 'b', 'inject-error': [], 'set-state': [], image: file('dst.qcow2') }],
      ['blockdev-add', { driver: 'blkdebug', 'node-name': 'c', 'set-state': [], image: file('missing.qcow2') }],
      ['blockdev-add', { driver: 'blkdebug', 'node-name': 'd', 'set-state': [], config: '${DIR}/missing.conf', image: file('dst.qcow2') }],
      ['blockdev-add', { driver: 'blkdebug', 'node-name': 'e', 'inject-error': [{ event: 'read_aio' }], image: file('dst.qcow2') }],
      ['query-named-block-nodes', { flat: true }],
    ]);
    expect(JSON.stringify(log[0])).toContain("doesn't support the option 'inject-error'");
  }, 60_000);
});
