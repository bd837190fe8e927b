/**
 * QEMU's nbd file names (nbd_parse_filename) as the options an nbd node
 * takes; the QMP session in test/qmp/mirror-nbd.test.ts holds the
 * refusals up against qemu-storage-daemon.
 */
import { describe, expect, it } from 'vitest';
import { filenameProtocol, isNbdFilename, nbdFilenameOptions } from '../../src/blockdev/nbd-filename.js';

describe('nbd file names', () => {
  it('finds the protocol as path_has_protocol does: a colon before any slash', () => {
    expect(filenameProtocol('nbd:unix:/s')).toBe('nbd');
    expect(filenameProtocol('nbd+unix:///e?socket=/s')).toBe('nbd+unix');
    expect(filenameProtocol('/tmp/a:b')).toBeUndefined();
    expect(filenameProtocol('dir/nbd:x')).toBeUndefined();
    expect(isNbdFilename('nbd+tcp://h/e')).toBe(true);
    expect(isNbdFilename('http://h/e')).toBe(false);
  });

  it('reads the legacy form, the export name last', () => {
    expect(nbdFilenameOptions('nbd:unix:/run/x.sock:exportname=drive-scsi0')).toEqual({ server: { type: 'unix', path: '/run/x.sock' }, export: 'drive-scsi0' });
    expect(nbdFilenameOptions('nbd:localhost:10809')).toEqual({ server: { type: 'inet', host: 'localhost', port: '10809' } });
    expect(nbdFilenameOptions('nbd:[::1]:7000:exportname=e')).toEqual({ server: { type: 'inet', host: '::1', port: '7000' }, export: 'e' });
    // An empty export name ends the parse with nothing, as in QEMU.
    expect(nbdFilenameOptions('nbd:unix:/s:exportname=')).toEqual({});
    expect(() => nbdFilenameOptions('nbd:host')).toThrow("error parsing address 'host'");
  });

  it('reads URIs: the export from the path, the socket from the query, the default port', () => {
    expect(nbdFilenameOptions('nbd+unix:///my%20disk?socket=/run/n.sock')).toEqual({ server: { type: 'unix', path: '/run/n.sock' }, export: 'my disk' });
    expect(nbdFilenameOptions('nbd://example.org/e')).toEqual({ server: { type: 'inet', host: 'example.org', port: '10809' }, export: 'e' });
    expect(nbdFilenameOptions('nbd+tcp://[fe80::1]:1234')).toEqual({ server: { type: 'inet', host: 'fe80::1', port: '1234' } });
    for (const bad of ['nbd://', 'nbd+unix:///e', 'nbd+unix://h/e?socket=/s', 'nbd://h/e?socket=/s', 'nbd+unix:///e?socket=/s&x=1', 'nbd+ssh://h/e']) {
      expect(() => nbdFilenameOptions(bad), bad).toThrow('No valid URL specified');
    }
  });
});
