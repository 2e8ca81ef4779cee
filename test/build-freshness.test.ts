import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

// The run's global setup rebuilds dist/ when a source is newer than its output (tests that spawn
// the server run dist/). The check is an ES module, as jest's global setup is, so it runs in a
// node process of its own here.
const CHECK = pathToFileURL(path.resolve(__dirname, 'support', 'fresh-build.mjs')).href;

async function staleSources(root: string): Promise<string[]> {
  const script = `import { staleSources } from ${JSON.stringify(CHECK)};
process.stdout.write(JSON.stringify(await staleSources(${JSON.stringify(root)})));`;
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script]);
  return JSON.parse(stdout) as string[];
}

describe('the check that dist/ is as new as the sources', () => {
  let root: string;
  const old = new Date('2026-01-01T00:00:00Z');
  const recent = new Date('2026-01-02T00:00:00Z');

  async function file(relative: string, modified: Date): Promise<void> {
    const full = path.join(root, relative);
    await mkdir(path.dirname(full), { recursive: true });
    await writeFile(full, '');
    await utimes(full, modified, modified);
  }

  beforeEach(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'orders-fresh-build-'));
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('finds nothing stale when every output is at least as new as its source', async () => {
    await file('src/main.ts', old);
    await file('dist/src/main.js', recent);
    await file('migrations/Migration1.ts', old);
    await file('dist/migrations/Migration1.js', old);
    expect(await staleSources(root)).toEqual([]);
  });

  it('names a source edited after the build, and one never built, in src/ and migrations/', async () => {
    await file('src/main.ts', recent);
    await file('dist/src/main.js', old);
    await file('src/orders/order.service.ts', old);
    await file('migrations/Migration2.ts', old);
    expect(await staleSources(root)).toEqual(['migrations/Migration2.ts', 'src/main.ts', 'src/orders/order.service.ts']);
  });
});
