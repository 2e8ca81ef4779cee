import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { connect } from 'nats';
import pino from 'pino';
import { startRelay } from '../src/events/relay';
import type { BenchDatabase } from './fixture';
import { type Cleanup, fmt, percentiles, sleep, stopPid } from './support';

/** What the relay did: a backlog drained, then events committed one by one and received from JetStream. */
export interface RelayResult {
  readonly backlog: number;
  readonly seconds: number;
  readonly eventsPerSecond: number;
  readonly lagEvents: number;
  readonly pollMs: number;
  /** Milliseconds from COMMIT returning to a JetStream subscriber's receipt. */
  readonly lagP50: number;
  readonly lagP99: number;
  readonly lagMax: number;
}

export interface RelaySettings {
  readonly backlog: number;
  readonly lagEvents: number;
  readonly pollMs: number;
}

export const RELAY_DEFAULTS: RelaySettings = { backlog: 20_000, lagEvents: 1_000, pollMs: 200 };

const BACKLOG = `insert into outbox_events (id, type, occurred_at, data)
  select gen_random_uuid(), 'OrderPlaced', now(), jsonb_build_object('orderId', gen_random_uuid()) from generate_series(1, ?)`;
const ONE_EVENT = `insert into outbox_events (id, type, occurred_at, data)
  values (gen_random_uuid(), 'OrderPlaced', now(), '{}') returning id`;

/**
 * One relay against `db` and a nats-server of its own: its throughput draining a backlog, then
 * the lag from COMMIT to a JetStream subscriber. Returns why not when nats-server is missing.
 */
export async function measureRelay(cleanup: Cleanup, db: BenchDatabase, settings: RelaySettings): Promise<RelayResult | string> {
  const server = await startNats(cleanup);
  if ('reason' in server) return server.reason;
  const nats = server.url;
  const sql = (text: string, params: unknown[] = []) => db.orm.em.getConnection().execute(text, params);
  await sql(BACKLOG, [settings.backlog]);
  const started = performance.now();
  const relay = await startRelay(db.orm, {
    natsUrl: nats,
    batchSize: 100,
    pollMs: settings.pollMs,
    retentionSeconds: 0,
    logger: pino({ level: 'warn' }, pino.destination(2)),
  });
  cleanup.add('stop the relay', () => relay.stop());
  const unpublished = async () => (await sql('select count(*)::int as n from outbox_events where published_at is null'))[0]?.n as number;
  while ((await unpublished()) > 0) await sleep(10);
  const seconds = (performance.now() - started) / 1000;

  const subscriber = await connect({ servers: nats });
  cleanup.add('close the subscriber', () => subscriber.close());
  const committedAt = new Map<string, number>();
  const lags: number[] = [];
  const messages = await (await subscriber.jetstream().consumers.get('EVENTS')).consume();
  const receiving = (async () => {
    for await (const message of messages) {
      const at = committedAt.get(message.headers?.get('Nats-Msg-Id') ?? '');
      if (at !== undefined) lags.push(performance.now() - at);
    }
  })();
  for (let index = 0; index < settings.lagEvents; index += 1) {
    const [row] = await sql(ONE_EVENT);
    committedAt.set(row.id, performance.now());
    await sleep(2);
  }
  while (lags.length < settings.lagEvents) await sleep(20);
  await messages.close();
  await receiving;
  const [lagP50, lagP99, lagMax] = percentiles(lags, [50, 99, 100]) as [number, number, number];
  return { ...settings, seconds, eventsPerSecond: settings.backlog / seconds, lagP50, lagP99, lagMax };
}

/** The relay's figures as one sentence. */
export function relayText(result: RelayResult | string): string {
  if (typeof result === 'string') return `not measured: ${result}`;
  return (
    `one relay (batches of 100) published a backlog of ${fmt(result.backlog)} events in ${fmt(result.seconds, 2)} s, ${fmt(result.eventsPerSecond)} events/s; ` +
    `from COMMIT to a JetStream subscriber, over ${fmt(result.lagEvents)} events committed one by one (EVENTS_RELAY_POLL_MS=${result.pollMs}): ` +
    `p50 ${fmt(result.lagP50, 1)} ms, p99 ${fmt(result.lagP99, 1)} ms, max ${fmt(result.lagMax, 1)} ms`
  );
}

/** A nats-server with JetStream on a free port, stopped by pid at cleanup; a reason when it cannot start. */
async function startNats(cleanup: Cleanup): Promise<{ url: string } | { reason: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'bench-nats-'));
  cleanup.add('remove the NATS store', () => rm(dir, { recursive: true, force: true }));
  const port = await freePort();
  const child = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', dir], { stdio: 'ignore' });
  const spawned = await new Promise<boolean>((resolve) => {
    child.once('spawn', () => resolve(true));
    child.once('error', () => resolve(false));
  });
  if (!spawned) return { reason: 'nats-server is not installed (apt-get install nats-server)' };
  cleanup.add('stop nats-server', () => stopPid(child.pid as number, 5_000));
  const url = `nats://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const probe = await connect({ servers: url, reconnect: false }).catch(() => undefined);
    if (probe) {
      await probe.close();
      return { url };
    }
    await sleep(50);
  }
  throw new Error('nats-server did not accept connections within 10 s');
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return typeof address === 'object' && address ? address.port : 0;
}
