import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { type BenchDatabase, type BenchServer, FLOOR_BODY, headers, orderBody, scrape } from './fixture';
import { type LoadResult, runLoad } from './load';
import { numberArg, percentiles } from './support';

/** Settings every autocannon scenario shares. */
export interface LoadSettings {
  readonly connections: number;
  readonly seconds: number;
  readonly warmupSeconds: number;
}

/** The settings from a command's `--duration`, `--warmup` and `--connections`. */
export function loadSettingsOf(args: Record<string, string>): LoadSettings {
  return {
    seconds: numberArg(args, 'duration', 1),
    warmupSeconds: numberArg(args, 'warmup', 0),
    connections: numberArg(args, 'connections', 1),
  };
}

/** `{ __typename }`: the stack's own floor. */
export function floor(server: BenchServer, tokens: readonly string[], settings: LoadSettings): Promise<LoadResult> {
  let i = 0;
  return runLoad({
    ...settings,
    url: server.url,
    next: () => ({ headers: headers(tokens[i++ % tokens.length] as string), body: FLOOR_BODY }),
  });
}

/** createOrder with a new key per request, users and products round-robin. */
export function firstOrders(server: BenchServer, tokens: readonly string[], bodies: readonly string[], settings: LoadSettings) {
  return runLoad({ ...settings, url: server.url, next: newOrderRequest(tokens, bodies) });
}

export function newOrderRequest(tokens: readonly string[], bodies: readonly string[]) {
  let i = 0;
  return () => {
    const n = i++;
    return { headers: headers(tokens[n % tokens.length] as string, randomUUID()), body: bodies[n % bodies.length] as string };
  };
}

/** The same stored key, again and again. */
export function replayOne(server: BenchServer, token: string, key: string, body: string, settings: LoadSettings) {
  const requestHeaders = headers(token, key);
  return runLoad({ ...settings, url: server.url, expectReplayed: true, next: () => ({ headers: requestHeaders, body }) });
}

/** Loaded records, picked at random: with the cache off each one is a primary-key read. */
export function replayLoaded(
  server: BenchServer,
  recordTokens: readonly string[],
  prefix: string,
  count: number,
  body: string,
  settings: LoadSettings,
) {
  return runLoad({
    ...settings,
    url: server.url,
    expectReplayed: true,
    next: () => {
      const n = 1 + Math.floor(Math.random() * count);
      return { headers: headers(recordTokens[n % recordTokens.length] as string, `${prefix}${n}`), body };
    },
  });
}

/** What a storm of duplicates did. */
export interface StormResult {
  readonly keys: number;
  readonly size: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
  readonly sampleError?: string;
  /** Orders per key, from the database (each key's note names it). */
  readonly minExecutions: number;
  readonly maxExecutions: number;
  /** Keys whose duplicates did not all return the same order. */
  readonly divergentKeys: number;
  readonly replayed: number;
  /** Executions the engine counted (idempotency_requests_total{outcome="executed"}). */
  readonly engineExecuted: number;
}

/** For each of `keys` keys, `size` concurrent identical createOrder requests with that key. */
export async function storm(
  server: BenchServer,
  db: BenchDatabase,
  tokens: readonly string[],
  products: readonly string[],
  keys: number,
  size: number,
  runId: string,
): Promise<StormResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: size });
  try {
    // Opens the sockets first, so that the storms do not measure TCP connects.
    await Promise.all(
      Array.from({ length: size }, (_, i) => send(agent, server.url, headers(tokens[i % tokens.length] as string), FLOOR_BODY)),
    );
    const executedBefore = await scrape(server.origin, 'idempotency_requests_total', { operation: 'createOrder', outcome: 'executed' });
    const latencies: number[] = [];
    let errors = 0;
    let replayed = 0;
    let divergentKeys = 0;
    let sampleError: string | undefined;
    for (let k = 0; k < keys; k++) {
      const key = `storm-${runId}-${k}`;
      const requestHeaders = headers(tokens[k % tokens.length] as string, key);
      const body = orderBody(products, k, key);
      const answers = await Promise.all(Array.from({ length: size }, () => send(agent, server.url, requestHeaders, body)));
      const orderIds = new Set<string>();
      for (const answer of answers) {
        latencies.push(answer.ms);
        if (answer.replayed) replayed++;
        const id = /"order":\{"id":"([^"]+)"/.exec(answer.body)?.[1];
        if (answer.status !== 200 || answer.body.includes('"errors"') || !id) {
          errors++;
          sampleError ??= `HTTP ${answer.status}: ${answer.body.slice(0, 300)}`;
        } else {
          orderIds.add(id);
        }
      }
      if (orderIds.size > 1) divergentKeys++;
    }
    const executedAfter = await scrape(server.origin, 'idempotency_requests_total', { operation: 'createOrder', outcome: 'executed' });
    const { rows } = await db.pool.query<{ note: string; orders: number }>(
      'select note, count(*)::int as orders from orders where note like $1 group by note',
      [`storm-${runId}-%`],
    );
    const counts = Array.from({ length: keys }, (_, k) => rows.find((row) => row.note === `storm-${runId}-${k}`)?.orders ?? 0);
    const [p50, p99] = percentiles(latencies, [50, 99]);
    return {
      keys,
      size,
      p50: p50 as number,
      p99: p99 as number,
      errors,
      sampleError,
      minExecutions: Math.min(...counts),
      maxExecutions: Math.max(...counts),
      divergentKeys,
      replayed,
      engineExecuted: executedAfter - executedBefore,
    };
  } finally {
    agent.destroy();
  }
}

interface Answer {
  readonly status: number;
  readonly body: string;
  readonly replayed: boolean;
  readonly ms: number;
}

function send(agent: http.Agent, url: string, requestHeaders: Record<string, string>, body: string): Promise<Answer> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const request = http.request(
      url,
      { method: 'POST', agent, headers: { ...requestHeaders, 'content-length': Buffer.byteLength(body) } },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            body: Buffer.concat(chunks).toString('utf8'),
            replayed: response.headers['idempotent-replayed'] === 'true',
            ms: performance.now() - started,
          }),
        );
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}

/** A short id naming this run's keys; letters and digits only (LIKE patterns stay exact). */
export function runId(): string {
  return Date.now().toString(36);
}
