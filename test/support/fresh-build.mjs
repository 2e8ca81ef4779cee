// Tests that spawn the server run the compiled dist/, so a run after an edit without a build
// would test old code. The run's global setup rebuilds when any source is newer than its output.
import { spawnSync } from 'node:child_process';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';

/** The folders whose TypeScript the spawned processes run from dist/ (src: the server and CLIs; migrations: the schema). */
const SOURCE_DIRS = ['src', 'migrations'];

async function typeScriptFiles(dir) {
  const entries = await readdir(dir, { withFileTypes: true }).catch((error) => {
    if (error.code === 'ENOENT') return [];
    throw error;
  });
  const files = [];
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) files.push(...(await typeScriptFiles(full)));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) files.push(full);
  }
  return files;
}

/** Sources under `root` (relative paths) whose compiled file in `root/dist` is missing or older than they are. */
export async function staleSources(root) {
  const stale = [];
  for (const dir of SOURCE_DIRS) {
    for (const source of await typeScriptFiles(path.join(root, dir))) {
      const relative = path.relative(root, source);
      const output = path.join(root, 'dist', relative.replace(/\.ts$/, '.js'));
      const built = await stat(output).catch(() => undefined);
      if (!built || built.mtimeMs < (await stat(source)).mtimeMs) stale.push(relative);
    }
  }
  return stale.sort();
}

/** Builds `root` (npm run build's compiler call) when dist/ is stale; throws when it is still stale afterwards. */
export async function ensureFreshBuild(root) {
  const stale = await staleSources(root);
  if (stale.length === 0) return;
  process.stderr.write(`\ndist/ is older than ${stale.length} source file(s) (${stale.slice(0, 3).join(', ')}, ...): building it\n`);
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const build = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
  if (build.status !== 0) throw new Error(`the build failed (exit ${build.status}): the tests would run stale code in dist/`);
  const still = await staleSources(root);
  if (still.length > 0) throw new Error(`dist/ is still older than ${still.join(', ')} after building`);
}
