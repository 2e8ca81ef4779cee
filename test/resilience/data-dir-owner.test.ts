import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { runningEmbeddedUrl } from '../../src/database/embedded';
import { withTimeout } from '../../src/timeout';
import { MAIN, type ServerProcess, signalServer, spawnNode, startServer, stopAllServers } from '../support/processes';

// Real `node dist/src/main.js` processes on one DATA_DIR with the embedded database. A second
// server must leave a live first one untouched and exit non-zero saying why; only an orphaned
// PostgreSQL (its server was killed) may be stopped. The first server runs as in production
// (no demo catalog) at LOG_LEVEL=debug, where the embedded database's log is forwarded: it must
// carry neither the database password nor a client's failed statement and its values.

const SECRET = 'data-dir-owner-test-secret-0123456789-abcdefghij';
const MARKER = 'marker-user-7f3a9c';

function env(dataDir: string): Record<string, string> {
  return {
    DATA_DIR: dataDir,
    PORT: '0',
    HOST: '127.0.0.1',
    NODE_ENV: 'production',
    JWT_SECRET: SECRET,
    LOG_LEVEL: 'debug',
  };
}

/** Runs main.js to its exit, which a server that cannot start reaches by itself. */
async function runToExit(environment: Record<string, string>): Promise<{ code: number | null; output: string }> {
  const server = spawnNode(MAIN, environment);
  const { code } = await withTimeout(server.exited, 45_000, 'the second server to exit').catch((error: unknown) => {
    process.kill(server.pid, 'SIGKILL');
    throw error;
  });
  return { code, output: server.output.stdout + server.output.stderr };
}

async function postmasterPid(dataDir: string): Promise<number> {
  return Number.parseInt((await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0] ?? '', 10);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function productCount(server: ServerProcess): Promise<number> {
  const response = await fetch(server.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query: '{ products(first: 100) { edges { node { id } } } }' }),
  });
  const body = (await response.json()) as { data?: { products: { edges: unknown[] } }; errors?: unknown[] };
  expect(body.errors).toBeUndefined();
  return body.data?.products.edges.length ?? -1;
}

describe('servers sharing a DATA_DIR', () => {
  let dataDir: string;
  let orphan: number | undefined;

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'orders-owner-'));
  });
  afterAll(async () => {
    await stopAllServers();
    // The PostgreSQL this test orphaned on purpose, if a failure left it running.
    if (orphan !== undefined && isAlive(orphan)) process.kill(orphan, 'SIGQUIT');
    await rm(dataDir, { recursive: true, force: true });
  });

  it('refuses a second server while the first one runs, and stops only an orphaned database', async () => {
    const first = await startServer(env(dataDir));
    const firstPostgres = await postmasterPid(dataDir);

    // Production: no demo catalog unless SEED_DEMO_CATALOG=true.
    expect(await productCount(first)).toBe(0);

    // A failed statement holding a user id, then a checkpoint, whose log lines are forwarded
    // after the error's would have been.
    const url = await runningEmbeddedUrl(dataDir);
    expect(url).toBeDefined();
    const client = new Client({ connectionString: url });
    await client.connect();
    await expect(client.query('SELECT $1::uuid', [MARKER])).rejects.toThrow(/uuid/);
    await client.query('CHECKPOINT');
    await client.end();
    await withTimeout(
      new Promise<void>((resolve) => {
        const check = setInterval(() => {
          if (first.output.stdout.includes('checkpoint complete')) {
            clearInterval(check);
            resolve();
          }
        }, 50);
      }),
      20_000,
      'the checkpoint to be logged',
    );
    expect(first.output.stdout).toMatch(/embedded postgres/);
    expect(first.output.stdout).not.toContain(MARKER);
    expect(first.output.stdout).not.toMatch(/STATEMENT:/);
    const started = first.output.stdout.split('\n').find((line) => line.includes('embedded PostgreSQL started'));
    expect(started).toMatch(/"databaseUrl":"postgres:\/\/postgres:redacted@/);
    expect(first.output.stdout).not.toMatch(/postgres:postgres@/);

    const second = await runToExit(env(dataDir));
    expect(second.code).not.toBe(0);
    expect(second.code).not.toBeNull();
    expect(second.output).toMatch(/DATA_DIR .* is in use by a running server \(process \d+/);
    expect(isAlive(firstPostgres)).toBe(true);
    expect(await postmasterPid(dataDir)).toBe(firstPostgres);
    expect(await productCount(first)).toBe(0);

    // Killed outright, the first server leaves its database orphaned: the next start stops it.
    orphan = firstPostgres;
    expect(await signalServer(first, 'SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
    const third = await startServer(env(dataDir));
    expect(isAlive(firstPostgres)).toBe(false);
    expect(third.output.stdout).toMatch(/stopping a PostgreSQL server left running by an earlier run/);
    expect(await productCount(third)).toBe(0);
    expect((await signalServer(third, 'SIGTERM')).code).toBe(0);
  });
});
