import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { applyDebianPatches, filterDiff, IOTESTS_TREES, seriesEntries } from '../../iotests/debian-patches.js';

// A stable release's patch as Debian carries it: a git diff touching the iotests, the python package and
// unrelated trees, including a rename outside the iotests that `git apply` on the whole file refuses
// when that tree is absent (v7.2.13.diff's lcitool rename).
const gitDiff = `From: stable
Subject: 7.2.9

diff --git a/block/qcow2.c b/block/qcow2.c
index 1111111..2222222 100644
--- a/block/qcow2.c
+++ b/block/qcow2.c
@@ -1,1 +1,1 @@
-old
+new
diff --git a/tests/qemu-iotests/127.out b/tests/qemu-iotests/127.out
index 3333333..4444444 100644
--- a/tests/qemu-iotests/127.out
+++ b/tests/qemu-iotests/127.out
@@ -1,3 +1,3 @@
 { 'execute': 'quit' }
-{"return": {}}
 SHUTDOWN
+{"return": {}}
diff --git a/tests/lcitool/facts/fedora-37.yml b/tests/lcitool/facts/fedora-37.yml
similarity index 82%
rename from lcitool/facts/targets/fedora-35.yml
rename to lcitool/facts/targets/fedora-37.yml
diff --git a/python/qemu/machine.py b/python/qemu/machine.py
index 5555555..6666666 100644
--- a/python/qemu/machine.py
+++ b/python/qemu/machine.py
@@ -1,1 +1,1 @@
-a = 1
+a = 2
`;

// A plain (quilt) diff with no git headers.
const plainDiff = `Description: fix
--- a/tests/qemu-iotests/common.rc\t2022-12-14
+++ b/tests/qemu-iotests/common.rc\t2022-12-15
@@ -1,1 +1,1 @@
-x
+y
--- a/hw/ide/core.c
+++ b/hw/ide/core.c
@@ -1,1 +1,1 @@
-p
+q
`;

describe('Debian patches for the iotests trees', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });

  it('reads a quilt series in order, without comments or options', () => {
    expect(seriesEntries('# stable\nv7.2.6.diff\n\nv7.2.7.diff -p1\n  # x\nmicrovm.patch\n')).toEqual(['v7.2.6.diff', 'v7.2.7.diff', 'microvm.patch']);
  });

  it('keeps only the git sections under the iotests trees', () => {
    const out = filterDiff(gitDiff, IOTESTS_TREES);
    expect(out).toContain('diff --git a/tests/qemu-iotests/127.out');
    expect(out).toContain('diff --git a/python/qemu/machine.py');
    expect(out).not.toContain('qcow2.c');
    expect(out).not.toContain('lcitool');
    expect(out).not.toContain('Subject');
  });

  it('keeps only the plain sections under the iotests trees', () => {
    const out = filterDiff(plainDiff, IOTESTS_TREES);
    expect(out).toContain('+++ b/tests/qemu-iotests/common.rc');
    expect(out).not.toContain('hw/ide');
    expect(out).not.toContain('Description');
    expect(filterDiff(plainDiff, ['docs/'])).toBe('');
  });

  it('applies the series to a tree holding only the iotests and python trees', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'blockemu-debpatch-'));
    dirs.push(dir);
    const top = join(dir, 'qemu-7.2.0');
    await mkdir(join(top, 'tests', 'qemu-iotests'), { recursive: true });
    await mkdir(join(top, 'python', 'qemu'), { recursive: true });
    await writeFile(join(top, 'tests', 'qemu-iotests', '127.out'), `{ 'execute': 'quit' }\n{"return": {}}\nSHUTDOWN\n`);
    await writeFile(join(top, 'tests', 'qemu-iotests', 'common.rc'), 'x\n');
    await writeFile(join(top, 'python', 'qemu', 'machine.py'), 'a = 1\n');
    const patches = join(dir, 'deb', 'debian', 'patches');
    await mkdir(patches, { recursive: true });
    await writeFile(join(patches, 'series'), 'v7.2.9.diff\nquilt.patch\nnothing.patch\n');
    await writeFile(join(patches, 'v7.2.9.diff'), gitDiff);
    await writeFile(join(patches, 'quilt.patch'), plainDiff);
    await writeFile(join(patches, 'nothing.patch'), plainDiff.replace(/tests\/qemu-iotests/g, 'docs'));
    // Inside a git repository of its own, the patch's paths must still be taken from the tree's top.
    spawnSync('git', ['init', '-q', dir]);

    expect(await applyDebianPatches(top, join(dir, 'deb'))).toEqual(['v7.2.9.diff', 'quilt.patch']);
    expect(await readFile(join(top, 'tests', 'qemu-iotests', '127.out'), 'utf8')).toBe(`{ 'execute': 'quit' }\nSHUTDOWN\n{"return": {}}\n`);
    expect(await readFile(join(top, 'tests', 'qemu-iotests', 'common.rc'), 'utf8')).toBe('y\n');
    expect(await readFile(join(top, 'python', 'qemu', 'machine.py'), 'utf8')).toBe('a = 2\n');
  });

  it('fails loudly when a patch does not apply', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'blockemu-debpatch-'));
    dirs.push(dir);
    const top = join(dir, 'qemu-7.2.0');
    await mkdir(join(top, 'python', 'qemu'), { recursive: true });
    await writeFile(join(top, 'python', 'qemu', 'machine.py'), 'a = 3\n');
    const patches = join(dir, 'deb', 'debian', 'patches');
    await mkdir(patches, { recursive: true });
    await writeFile(join(patches, 'series'), 'v7.2.9.diff\n');
    await writeFile(join(patches, 'v7.2.9.diff'), gitDiff);
    await expect(applyDebianPatches(top, join(dir, 'deb'))).rejects.toThrow(/git apply .*v7\.2\.9\.diff/);
  });
});
