/**
 * Re-plays the wire cases against a live qemu-storage-daemon and checks that
 * it still answers exactly as recorded in fixtures/wire-qsd-7.2.json (the
 * oracle wire.test.ts compares our parser to). Cases marked slow (megabytes
 * through QEMU's byte-at-a-time reader) only run with WIRE_LIVE_SLOW=1. To
 * re-record after adding a case:
 *   UPDATE_WIRE_FIXTURES=1 [WIRE_LIVE_SLOW=1] npx vitest run test/qmp/wire-live.test.ts
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { qemu } from '../helpers/qemu.js';
import { SENTINEL, WIRE_CASES } from './wire-cases.js';
import { expandRuns, recordWireCases, type WireFixture } from './wire-record.js';

const FIXTURE = join(import.meta.dirname, 'fixtures', 'wire-qsd-7.2.json');
const update = process.env.UPDATE_WIRE_FIXTURES === '1';
const slow = process.env.WIRE_LIVE_SLOW === '1';
const cases = WIRE_CASES.filter((c) => slow || !c.slow);

describe.skipIf(!qemu.storageDaemon)('QMP wire input: qemu-storage-daemon vs the recorded transcripts', () => {
  it(update ? 're-records the fixtures' : 'answers every case as recorded', async () => {
    const live = await recordWireCases(cases);
    if (update) {
      // Cases not re-recorded now (the slow ones, by default) keep their old transcripts.
      const old = await readFile(FIXTURE, 'utf8').then((t) => (JSON.parse(t) as WireFixture).cases, () => []);
      const fixture: WireFixture = {
        qemu: live.version,
        note: 'Raw QMP input (after qmp_capabilities) and the reply lines qemu-storage-daemon wrote for it, each case followed by the sentinel. Re-record: UPDATE_WIRE_FIXTURES=1 [WIRE_LIVE_SLOW=1] npx vitest run test/qmp/wire-live.test.ts',
        sentinel: SENTINEL,
        cases: WIRE_CASES.map((c) => live.cases.find((l) => l.name === c.name) ?? old.find((o) => o.name === c.name)).filter((c) => c !== undefined),
      };
      await writeFile(FIXTURE, `${JSON.stringify(fixture, null, 1)}\n`);
      return;
    }
    const recorded = JSON.parse(await readFile(FIXTURE, 'utf8')) as WireFixture;
    if (!live.version.startsWith(recorded.qemu.split(' ')[0]!.replace(/\.\d+$/, '.'))) {
      console.warn(`SKIP: the installed qemu-storage-daemon is ${live.version}; the transcripts are of ${recorded.qemu}`);
      return;
    }
    for (const c of recorded.cases.filter((r) => live.cases.some((l) => l.name === r.name))) {
      const got = live.cases.find((l) => l.name === c.name);
      expect(got && expandRuns(got.replies), c.name).toEqual(expandRuns(c.replies));
    }
  }, slow ? 3_600_000 : 60_000);
});
