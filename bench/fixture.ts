import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { MikroORM } from '@mikro-orm/postgresql';
import pg from 'pg';
import pino from 'pino';
import { signToken } from '../src/auth/token';
import { startEmbeddedPostgres } from '../src/database/embedded';
import { migrate, openOrm } from '../src/database/orm';
import { seedCatalog } from '../src/database/seed';
import { withTimeout } from '../src/timeout';
import type { ReadyLine } from './server';
import {
  BENCH_JWT_SECRET,
  type Cleanup,
  isAlive,
  procCpuSeconds,
  procMemory,
  reportIdleClientError,
  stopPid,
  waitForExit,
} from './support';

/** Stock every product gets, so that no run ever hits INSUFFICIENT_STOCK. */
const STOCK = 1_000_000_000;

/** A fresh, migrated and seeded PostgreSQL database for one bench command, gone when the command ends. */
export interface BenchDatabase {
  readonly url: string;
  /** Raw SQL from the runner (loading, counting, settings). */
  readonly pool: pg.Pool;
  /** The ORM, for the engine's own purge. */
  readonly orm: MikroORM;
}

/**
 * Starts one embedded PostgreSQL in a new temporary DATA_DIR and prepares its default
 * database: migrations, the demo catalog, and a stock for every product that cannot run out.
 */
export async function startDatabase(cleanup: Cleanup): Promise<BenchDatabase> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'orders-bench-'));
  cleanup.add('remove the temporary DATA_DIR', () => rm(dir, { recursive: true, force: true }));
  const dataDir = path.join(dir, 'pg');
  const logger = pino({ level: 'warn' }, pino.destination(2));
  process.stderr.write(`starting embedded PostgreSQL in ${dataDir}\n`);
  const embedded = await startEmbeddedPostgres({ dataDir, port: 0, logger });
  const postmaster = await postmasterPid(dataDir);
  cleanup.add('stop PostgreSQL', async () => {
    // A Ctrl-C reaches PostgreSQL too; stop() would then wait for an exit that already happened.
    if (postmaster !== undefined && !isAlive(postmaster)) return;
    await withTimeout(embedded.stop(), 30_000, 'PostgreSQL shutdown').catch(() => undefined);
    if (postmaster !== undefined && !(await waitForExit(postmaster, 1_000))) await stopPid(postmaster, 10_000);
  });
  return prepareDatabase(cleanup, embedded.url);
}

/** Creates another database `name` in the same cluster as `db`, prepared the same way. */
export async function addDatabase(cleanup: Cleanup, db: BenchDatabase, name: string): Promise<BenchDatabase> {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`not a plain database name: ${name}`);
  await db.pool.query(`create database ${name}`);
  const url = new URL(db.url);
  url.pathname = `/${name}`;
  return prepareDatabase(cleanup, url.toString());
}

async function prepareDatabase(cleanup: Cleanup, url: string): Promise<BenchDatabase> {
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  pool.on('error', reportIdleClientError);
  cleanup.add('close the SQL pool', () => pool.end());
  const orm = await openOrm({ clientUrl: url });
  cleanup.add('close the ORM', () => orm.close(true));
  await migrate(orm);
  await seedCatalog(orm.em.fork());
  await pool.query('update products set stock = $1', [STOCK]);
  // Only the catalog: a VACUUM of the still empty order tables would record them as empty, and
  // the foreign-key checks that plan against that (order_lines -> orders) would scan orders
  // sequentially on every insert until autovacuum next analyzes it, a minute or more later.
  await pool.query('vacuum analyze products');
  return { url, pool, orm };
}

async function postmasterPid(dataDir: string): Promise<number | undefined> {
  const text = await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8').catch(() => '');
  const pid = Number.parseInt(text.split('\n')[0] ?? '', 10);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/** A bench server child process (dist/bench/server.js). */
export interface BenchServer {
  readonly name: string;
  readonly pid: number;
  readonly url: string;
  /** Origin, for /metrics. */
  readonly origin: string;
  /** Current resident set size, bytes. */
  rss(): Promise<number | undefined>;
  /** Peak resident set size since start (VmHWM), bytes. */
  peakRss(): Promise<number | undefined>;
  /** CPU time the process has used so far (user + system, as process.cpuUsage counts it), seconds. */
  cpuSeconds(): Promise<number | undefined>;
}

export interface ServerOptions {
  /** bare: bench/bare-server.ts (no API); the others: bench/server.ts --mode */
  readonly mode: 'engine' | 'bypass' | 'noevents' | 'bare';
  readonly cacheSize?: number;
  /** Writes a V8 CPU profile of the server into this folder when it stops. */
  readonly profileDir?: string;
  /** Takes a CPU profile through node:inspector into this file, from the first SIGUSR2 until the server stops. */
  readonly cpuProfile?: string;
  /** The dist folder of another build to run the server from (an A/B of two builds in one run); default: this build's. */
  readonly dist?: string;
}

/** Starts a bench server on a free loopback port; it is stopped by pid when the command ends. */
export async function startServer(cleanup: Cleanup, name: string, databaseUrl: string, options: ServerOptions): Promise<BenchServer> {
  const profile = options.profileDir ? ['--cpu-prof', '--cpu-prof-dir', options.profileDir, '--cpu-prof-name', `${name}.cpuprofile`] : [];
  const folder = options.dist ? path.join(path.resolve(options.dist), 'bench') : __dirname;
  const args =
    options.mode === 'bare'
      ? [...profile, path.join(folder, 'bare-server.js'), '--port', '0']
      : [...profile, path.join(folder, 'server.js'), '--mode', options.mode, '--port', '0', '--database-url', databaseUrl];
  if (options.cacheSize !== undefined) args.push('--cache-size', String(options.cacheSize));
  if (options.cpuProfile !== undefined) args.push('--cpu-profile', options.cpuProfile);
  // Production in the process environment too, as the Dockerfile sets it: libraries read it there
  // (graphql-js skips its development-only checks).
  const env = { ...process.env, NODE_ENV: 'production' };
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start the ${name} server`);
  cleanup.add(`stop the ${name} server (pid ${pid})`, () => stopPid(pid, 15_000));
  forward(child.stderr, name);
  const ready = await withTimeout(readyLine(child, name), 60_000, `start of the ${name} server`);
  const origin = `http://127.0.0.1:${ready.port}`;
  process.stderr.write(`${name} server ready on ${origin} (pid ${pid})\n`);
  return {
    name,
    pid,
    url: `${origin}/graphql`,
    origin,
    rss: () => procMemory(pid, 'VmRSS'),
    peakRss: () => procMemory(pid, 'VmHWM'),
    cpuSeconds: () => procCpuSeconds(pid),
  };
}

function readyLine(child: ChildProcess, name: string): Promise<ReadyLine> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    let ready = false;
    lines.on('line', (line) => {
      if (!ready && line.startsWith('{"event":"ready"')) {
        ready = true;
        resolve(JSON.parse(line) as ReadyLine);
      } else {
        process.stderr.write(`[${name}] ${line}\n`);
      }
    });
    child.once('exit', (code, signal) => {
      if (!ready) reject(new Error(`the ${name} server exited before it was ready (code ${code}, signal ${signal})`));
    });
  });
}

function forward(stream: NodeJS.ReadableStream | null, name: string): void {
  if (!stream) return;
  createInterface({ input: stream }).on('line', (line) => process.stderr.write(`[${name}] ${line}\n`));
}

/** Bench users are `user-0` ... `user-<n-1>`; the loaded records use the same names. */
export function userId(index: number): string {
  return `user-${index}`;
}

/** Bearer tokens of the first `count` users, by index. */
export async function mintTokens(count: number): Promise<string[]> {
  return Promise.all(Array.from({ length: count }, (_, index) => signToken({ id: userId(index), roles: [] }, BENCH_JWT_SECRET, '48h')));
}

/** The catalog's product ids, in SKU order. */
export async function productIds(pool: pg.Pool): Promise<string[]> {
  const { rows } = await pool.query<{ id: string }>('select id from products order by sku');
  return rows.map((row) => row.id);
}

/** The bytes a `{ __typename }` request sends. */
export const FLOOR_BODY = JSON.stringify({ query: '{ __typename }' });

const CREATE_ORDER = `mutation CreateOrder($input: CreateOrderInput!) {
  createOrder(input: $input) {
    order { id status totalCents currency note createdAt
      lines { quantity unitPriceCents lineTotalCents product { id sku name priceCents currency stock } } }
  }
}`;

/**
 * A createOrder request body. Variant v orders one unit of product v and two of product v+1, so
 * concurrent orders spread their row locks over the catalog instead of queueing on one product.
 */
export function orderBody(products: readonly string[], variant: number, note = 'bench'): string {
  const v = variant % products.length;
  return JSON.stringify({
    query: CREATE_ORDER,
    operationName: 'CreateOrder',
    variables: {
      input: {
        lines: [
          { productId: products[v], quantity: 1 },
          { productId: products[(v + 1) % products.length], quantity: 2 },
        ],
        note,
      },
    },
  });
}

/** One body per variant. */
export function orderBodies(products: readonly string[]): string[] {
  return products.map((_, variant) => orderBody(products, variant));
}

/** Headers of every bench request. */
export function headers(token: string, key?: string): Record<string, string> {
  const result: Record<string, string> = {
    'content-type': 'application/json',
    accept: 'application/graphql-response+json, application/json',
    authorization: `Bearer ${token}`,
  };
  if (key !== undefined) result['idempotency-key'] = key;
  return result;
}

/** Places the order `body` with `key` outside autocannon, for a record to replay or copy; throws unless it succeeded. */
export async function placeKeyedOrder(url: string, token: string, key: string, body: string): Promise<void> {
  const created = await post(url, headers(token, key), body);
  if (created.status !== 200 || created.text.includes('"errors"'))
    throw new Error(`could not place the order with key ${key}: ${created.text}`);
}

/** Sends one POST /graphql outside autocannon (setup, checks). */
export async function post(url: string, requestHeaders: Record<string, string>, body: string) {
  const response = await fetch(url, { method: 'POST', headers: requestHeaders, body });
  const text = await response.text();
  return { status: response.status, replayed: response.headers.get('idempotent-replayed') === 'true', text };
}

/** A counter or histogram sum from the server's /metrics, summed over matching label sets. */
export async function scrape(origin: string, metric: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${origin}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(metric)) continue;
    const match = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$/.exec(line);
    if (!match || match[1] !== metric) continue;
    const set = match[2] ?? '';
    if (Object.entries(labels).every(([name, value]) => set.includes(`${name}="${value}"`))) total += Number(match[3]);
  }
  return total;
}
