/**
 * What `npm pack` ships: the compiled library and CLI with their type
 * declarations — no benchmarks, no source maps (they would point at
 * TypeScript sources the package does not contain), nothing stale.
 */
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { withTempDir } from './helpers/qemu.js';

const exec = promisify(execFile);
const ROOT = join(import.meta.dirname, '..');
/** What build/bundle.ts writes (bin/launch.ts loads them). */
const BUNDLE_FILES = ['dist/blockemu.bundle.cjs', 'dist/blockemu.bundle.cache'];

describe('the npm package', () => {
  it('lists dist/src (JavaScript and declarations), dist/bin and the executables\' bundle only', async () => {
    // Scripts are skipped: prepack would rebuild dist under the daemon tests running beside this one.
    const { stdout } = await exec('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, maxBuffer: 64 << 20 });
    const files = (JSON.parse(stdout) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map((f) => f.path);
    const odd = files.filter((f) => !/^dist\/src\/.+\.(js|d\.ts)$/.test(f) && !/^dist\/bin\/.+\.js$/.test(f) && f !== 'package.json' && f !== 'README.md' && !BUNDLE_FILES.includes(f));
    expect(odd).toEqual([]);
    expect(files).toContain('dist/src/index.d.ts');
    expect(files).toContain('dist/bin/blockemu.js');
    for (const f of BUNDLE_FILES) expect(files).toContain(f);
  });

  it("prepack's build emits no source maps nor references to them", async () => {
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts['prepack']).toContain('tsc -p tsconfig.pack.json');
    await withTempDir(async (out) => {
      await exec(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.pack.json'), '--outDir', out], { cwd: ROOT });
      const emitted = (await readdir(out, { recursive: true })) as string[];
      expect(emitted.filter((f) => f.endsWith('.map'))).toEqual([]);
      expect(emitted.some((f) => f.startsWith('bench'))).toBe(false);
      const index = await readFile(join(out, 'src', 'index.js'), 'utf8');
      expect(index).not.toContain('sourceMappingURL');
      // Every subpath export is emitted; only blockemu/vitest imports vitest (an optional peer dependency).
      const manifest = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { exports: Record<string, Record<string, string>>; peerDependenciesMeta?: Record<string, { optional?: boolean }> };
      const pkgExports = manifest.exports;
      expect(manifest.peerDependenciesMeta?.['vitest']?.optional).toBe(true);
      expect(Object.keys(pkgExports)).toEqual(['.', './vitest']);
      for (const target of Object.values(pkgExports).flatMap((e) => Object.values(e))) expect(emitted).toContain(target.replace(/^\.\/dist\//, ''));
      const importers: string[] = [];
      for (const f of emitted.filter((f) => f.endsWith('.js'))) if (/from 'vitest'|import\('vitest'\)/.test(await readFile(join(out, f), 'utf8'))) importers.push(f);
      expect(importers).toEqual([join('src', 'vitest.js')]);
    });
  }, 120_000);
});
