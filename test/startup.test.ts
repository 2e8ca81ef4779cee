import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { MIGRATIONS } from '../migrations';
import { withTimeout } from '../src/timeout';
import { createTestDatabase, dropTestDatabase } from './support/database';
import { logLines, MAIN, type Spawned, signalServer, spawnNode, stopAllServers } from './support/processes';

/** A bad configuration exits at once; this bound only turns a hang into a clear failure, with room for a loaded machine. */
const EXIT_BOUND_MS = 45_000;
const READY_TIMEOUT_MS = 45_000;

interface Ready {
  readonly url: string;
  readonly token: string | undefined;
  /** `process.version` of the server, from its readiness line. */
  readonly node: unknown;
}

interface ProductNode {
  id: string;
  currency: string;
  stock: number;
}

let workDir: string;

/** The server as `npm start` runs it: info logs, any free port, in the test's working directory. */
function spawnServer(env: Record<string, string>): Spawned {
  return spawnNode(MAIN, { LOG_LEVEL: 'info', PORT: '0', HOST: '127.0.0.1', ...env }, { cwd: workDir });
}

/** The database URL the server logged when its embedded PostgreSQL started. */
function databaseUrlOf(server: Spawned): string {
  const started = logLines(server.output.stdout).find((entry) => entry.msg === 'embedded PostgreSQL started');
  if (typeof started?.databaseUrl !== 'string') throw new Error(`no start line with a databaseUrl in:\n${server.output.stdout}`);
  return started.databaseUrl;
}

/** The host of that URL: a socket directory or an address. */
function databaseHost(server: Spawned): string {
  return decodeURIComponent(new URL(databaseUrlOf(server)).hostname);
}

/** Waits for the readiness log line (and, outside production, the printed token). */
async function waitForReady(server: Spawned, expectToken = true): Promise<Ready> {
  const ready = new Promise<Ready>((resolve, reject) => {
    const check = () => {
      const line = logLines(server.output.stdout).find((entry) => entry.msg === 'GraphQL API ready');
      const token = /Development token[^\n]*\n(\S+)\n/.exec(server.output.stdout)?.[1];
      if (line && typeof line.url === 'string' && (token || !expectToken)) {
        server.child.stdout?.off('data', check);
        resolve({ url: line.url, token, node: line.node });
      }
    };
    server.child.stdout?.on('data', check);
    check();
    void server.exited.then((exit) =>
      reject(new Error(`server exited (${JSON.stringify(exit)}) before it was ready:\n${server.output.stdout}\n${server.output.stderr}`)),
    );
  });
  return withTimeout(ready, READY_TIMEOUT_MS, 'the server to be ready');
}

async function gql<T>(url: string, query: string, token?: string): Promise<{ data?: T; errors?: unknown[] }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(url, { method: 'POST', headers, body: JSON.stringify({ query }) });
  return (await response.json()) as { data?: T; errors?: unknown[] };
}

async function products(url: string): Promise<ProductNode[]> {
  const result = await gql<{ products: { edges: { node: ProductNode }[] } }>(
    url,
    '{ products(first: 100) { edges { node { id currency stock } } } }',
  );
  expect(result.errors).toBeUndefined();
  return result.data?.products.edges.map((edge) => edge.node) ?? [];
}

/** A process that is running (a zombie has finished: only its exit status is left). */
async function isRunning(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Pids of running processes whose command line names the data directory (the postmaster's `-D dir`). */
async function processesNaming(dataDir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const args = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).split('\0');
      if (args.includes(dataDir) && (await isRunning(Number(entry)))) pids.push(Number(entry));
    } catch {
      // The process ended while the list was read.
    }
  }
  return pids;
}

async function postmasterPid(dataDir: string): Promise<number | undefined> {
  try {
    const pid = Number.parseInt((await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0] ?? '', 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Stops a PostgreSQL left behind in the data directory: only the pid its own lock file names. */
async function stopLeftoverPostgres(dataDir: string): Promise<void> {
  const pid = await postmasterPid(dataDir);
  if (pid === undefined || !(await isRunning(pid))) return;
  const args = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
  if (!args.includes(dataDir)) return;
  process.kill(pid, 'SIGINT');
  const deadline = Date.now() + 10_000;
  while ((await isRunning(pid)) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
}

async function expectNoPostgresFor(dataDir: string): Promise<void> {
  expect(await processesNaming(dataDir)).toEqual([]);
  const pid = await postmasterPid(dataDir);
  if (pid !== undefined) expect(await isRunning(pid)).toBe(false);
}

beforeAll(async () => {
  workDir = await mkdtemp(path.join(os.tmpdir(), 'orders-startup-'));
  // Run as root, the embedded server runs as the `postgres` user, which must reach DATA_DIR.
  await chmod(workDir, 0o755);
});

afterAll(async () => {
  await stopAllServers();
  for (const entry of await readdir(workDir)) await stopLeftoverPostgres(path.join(workDir, entry));
  await rm(workDir, { recursive: true, force: true });
});

describe('server start-up with an embedded PostgreSQL', () => {
  let dataDir: string;
  let firstProductIds: string[] = [];

  beforeAll(() => {
    dataDir = path.join(workDir, 'data');
  });

  it('initialises an empty DATA_DIR, seeds the demo catalog, prints a working token and stops cleanly on SIGTERM', async () => {
    expect(existsSync(dataDir)).toBe(false);
    const server = spawnServer({ DATA_DIR: dataDir });
    const { url, token, node } = await waitForReady(server);
    expect(server.output.stdout).toContain(`GraphQL API: ${url}`);
    expect(node).toBe(process.version);

    const catalog = await products(url);
    expect(catalog.length).toBeGreaterThanOrEqual(12);
    for (const product of catalog) {
      expect(product.currency).toBe('USD');
      expect(product.stock).toBeGreaterThanOrEqual(100);
    }
    firstProductIds = catalog.map((product) => product.id).sort();

    const viewer = await gql<{ viewer: { id: string } | null }>(url, '{ viewer { id } }', token);
    expect(viewer.errors).toBeUndefined();
    expect(viewer.data?.viewer?.id).toEqual(expect.any(String));
    expect(await postmasterPid(dataDir)).toBeDefined();
    // The application reaches its database through the Unix-domain socket in DATA_DIR.
    expect(databaseHost(server)).toBe(dataDir);
    expect(existsSync(path.join(dataDir, `.s.PGSQL.${new URL(databaseUrlOf(server)).port}`))).toBe(true);

    expect(await signalServer(server, 'SIGTERM')).toEqual({ code: 0, signal: null });
    await expectNoPostgresFor(dataDir);
  });

  it('restarts on the same DATA_DIR with the same catalog, without seeding it again', async () => {
    const server = spawnServer({ DATA_DIR: dataDir });
    const { url } = await waitForReady(server);
    const catalog = await products(url);
    expect(catalog.map((product) => product.id).sort()).toEqual(firstProductIds);
    expect(logLines(server.output.stdout).some((entry) => entry.msg === 'demo catalog seeded')).toBe(false);

    expect(await signalServer(server, 'SIGTERM')).toEqual({ code: 0, signal: null });
    await expectNoPostgresFor(dataDir);
  });

  it('starts after a killed run that left its PostgreSQL and lock file behind, and stops the leftover', async () => {
    const killed = spawnServer({ DATA_DIR: dataDir });
    await waitForReady(killed);
    const orphan = await postmasterPid(dataDir);
    expect(await signalServer(killed, 'SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
    expect(orphan).toBeDefined();
    expect(await isRunning(orphan ?? 0)).toBe(true);

    const server = spawnServer({ DATA_DIR: dataDir });
    const { url } = await waitForReady(server);
    expect((await products(url)).map((product) => product.id).sort()).toEqual(firstProductIds);
    expect(await isRunning(orphan ?? 0)).toBe(false);
    expect(await processesNaming(dataDir)).toEqual([await postmasterPid(dataDir)]);

    expect(await signalServer(server, 'SIGTERM')).toEqual({ code: 0, signal: null });
    await expectNoPostgresFor(dataDir);
  });
});

describe('server start-up with an embedded PostgreSQL in a deep DATA_DIR', () => {
  it('connects over TCP on 127.0.0.1 when the path is too long for a Unix-domain socket', async () => {
    const dataDir = path.join(workDir, 'a-data-directory-whose-path-is-longer-than-a-unix-socket-address-allows');
    expect(Buffer.byteLength(dataDir)).toBeGreaterThan(92);
    const server = spawnServer({ DATA_DIR: dataDir });
    const { url } = await waitForReady(server);
    expect((await products(url)).length).toBeGreaterThanOrEqual(12);
    expect(databaseHost(server)).toBe('127.0.0.1');

    expect(await signalServer(server, 'SIGTERM')).toEqual({ code: 0, signal: null });
    await expectNoPostgresFor(dataDir);
  });
});

describe('server start-up with bad configuration', () => {
  it('exits 78 at once, naming PORT, when PORT is not a number', async () => {
    const dataDir = path.join(workDir, 'bad-port');
    const server = spawnServer({ DATA_DIR: dataDir, PORT: 'abc' });
    const exit = await withTimeout(server.closed, EXIT_BOUND_MS, 'the server to exit');
    // 78 is EX_CONFIG (sysexits.h): a supervisor can tell a bad configuration from a crash.
    expect(exit).toEqual({ code: 78, signal: null });
    expect(server.output.stderr).toMatch(/\bPORT\b/);
    expect(existsSync(dataDir)).toBe(false);
  });

  it('exits 78 at once, naming JWT_SECRET, in production without JWT_SECRET', async () => {
    const dataDir = path.join(workDir, 'no-secret');
    const server = spawnServer({ DATA_DIR: dataDir, NODE_ENV: 'production' });
    const exit = await withTimeout(server.closed, EXIT_BOUND_MS, 'the server to exit');
    expect(exit).toEqual({ code: 78, signal: null });
    expect(server.output.stderr).toContain('JWT_SECRET');
    expect(existsSync(dataDir)).toBe(false);
  });
});

/** Key of the advisory lock under which src/database/orm.ts migrates. */
const MIGRATION_LOCK = 7_305_000;

/** Sessions of the database waiting for the migration lock (a bigint key: its low 32 bits are objid). */
async function migrationLockWaiters(client: Client): Promise<number> {
  const { rows } = await client.query<{ waiting: number }>(
    `select count(*)::int as waiting from pg_locks
      where locktype = 'advisory' and objid = $1 and not granted
        and database = (select oid from pg_database where datname = current_database())`,
    [MIGRATION_LOCK],
  );
  return rows[0]!.waiting;
}

describe('server start-up with DATABASE_URL', () => {
  const databases: string[] = [];

  afterAll(async () => {
    for (const url of databases) await dropTestDatabase(url);
  });

  it('migrates and seeds that database and starts no embedded PostgreSQL', async () => {
    const databaseUrl = await createTestDatabase();
    databases.push(databaseUrl);
    const dataDir = path.join(workDir, 'unused');
    const server = spawnServer({ DATA_DIR: dataDir, DATABASE_URL: databaseUrl });
    const { url } = await waitForReady(server);

    const catalog = await products(url);
    expect(catalog.length).toBeGreaterThanOrEqual(12);
    expect(existsSync(dataDir)).toBe(false);
    expect(await processesNaming(dataDir)).toEqual([]);
    expect(logLines(server.output.stdout).some((entry) => entry.msg === 'embedded PostgreSQL started')).toBe(false);

    expect(await signalServer(server, 'SIGTERM')).toEqual({ code: 0, signal: null });
  });

  it('migrates a fresh database once when two processes start on it together, and both serve', async () => {
    const databaseUrl = await createTestDatabase();
    databases.push(databaseUrl);
    // The test holds the migration lock while both processes start, so both provably reach the
    // migration at once and wait on each other's turn rather than on the test's timing.
    const holder = new Client({ connectionString: databaseUrl });
    await holder.connect();
    try {
      await holder.query('select pg_advisory_lock($1)', [MIGRATION_LOCK]);
      const servers = [0, 1].map((index) => spawnServer({ DATA_DIR: path.join(workDir, `together-${index}`), DATABASE_URL: databaseUrl }));
      const deadline = Date.now() + READY_TIMEOUT_MS;
      while ((await migrationLockWaiters(holder)) < 2) {
        const gone = servers.find((server) => server.child.exitCode !== null || server.child.signalCode !== null);
        if (gone) throw new Error(`a server exited before it reached the migration lock:\n${gone.output.stdout}\n${gone.output.stderr}`);
        if (Date.now() > deadline) throw new Error('the two servers never waited for the migration lock together');
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      await holder.query('select pg_advisory_unlock($1)', [MIGRATION_LOCK]);

      const ready = await Promise.all(servers.map((server) => waitForReady(server)));
      for (const { url } of ready) expect((await products(url)).length).toBeGreaterThanOrEqual(12);
      const migratedBy = servers.filter((server) => logLines(server.output.stdout).some((entry) => entry.msg === 'migrations applied'));
      expect(migratedBy).toHaveLength(1);
      const { rows } = await holder.query<{ name: string }>('select name from mikro_orm_migrations order by name');
      expect(rows.map((row) => row.name)).toEqual(MIGRATIONS.map((migration) => migration.name).sort());
      for (const server of servers) expect(await signalServer(server, 'SIGTERM')).toEqual({ code: 0, signal: null });
    } finally {
      await holder.end();
    }
  });
});
