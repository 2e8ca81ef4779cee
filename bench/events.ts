import 'reflect-metadata';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { connect, type NatsConnection } from 'nats';
import pino from 'pino';
import { startEmbeddedPostgres } from '../src/database/embedded';
import { migrate, openOrm } from '../src/database/orm';
import { startRelay } from '../src/events/relay';

// `npm run bench:events`: relay throughput (events/s) and end-to-end lag from COMMIT to a
// JetStream subscriber, against an embedded PostgreSQL and a nats-server of its own.
// Usage: npm run bench:events -- [events=20000] [lagEvents=1000] [pollMs=200]

const [backlog = 20_000, lagEvents = 1_000, pollMs = 200] = process.argv.slice(2).map(Number);
const logger = pino({ level: 'warn' });

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return typeof address === 'object' && address ? address.port : 0;
}

async function startNats(dir: string): Promise<{ url: string; stop: () => void }> {
  const port = await freePort();
  const child = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', path.join(dir, 'nats')], { stdio: 'ignore' });
  const url = `nats://127.0.0.1:${port}`;
  for (;;) {
    const probe = await connect({ servers: url, reconnect: false }).catch(() => undefined);
    if (probe) {
      await probe.close();
      return { url, stop: () => process.kill(child.pid as number, 'SIGTERM') };
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

async function subscribe(nc: NatsConnection, onMessage: (id: string) => void) {
  const consumer = await nc.jetstream().consumers.get('EVENTS');
  const messages = await consumer.consume();
  void (async () => {
    for await (const message of messages) onMessage(message.headers?.get('Nats-Msg-Id') ?? '');
  })();
  return messages;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-events-'));
  const database = await startEmbeddedPostgres({ dataDir: path.join(dir, 'pg'), port: 0, logger });
  const nats = await startNats(dir);
  const orm = await openOrm({ clientUrl: database.url, poolSize: 10 });
  const sql = (text: string, params: unknown[] = []) => orm.em.getConnection().execute(text, params);
  try {
    await migrate(orm);
    const insert = `insert into outbox_events (id, type, occurred_at, data)
      select gen_random_uuid(), 'OrderPlaced', now(), jsonb_build_object('orderId', gen_random_uuid()) from generate_series(1, ?)`;

    // Throughput: a backlog of events, drained by one relay.
    await sql(insert, [backlog]);
    const started = performance.now();
    const relay = await startRelay(orm, { natsUrl: nats.url, batchSize: 100, pollMs, retentionSeconds: 0, logger });
    for (;;) {
      const [row] = await sql('select count(*)::int as n from outbox_events where published_at is null');
      if (row.n === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const seconds = (performance.now() - started) / 1000;

    // Lag: events committed one by one; the time from COMMIT returning to a subscriber's receipt.
    const nc = await connect({ servers: nats.url });
    const committedAt = new Map<string, number>();
    const lags: number[] = [];
    const messages = await subscribe(nc, (id) => {
      const at = committedAt.get(id);
      if (at !== undefined) lags.push(performance.now() - at);
    });
    for (let index = 0; index < lagEvents; index += 1) {
      const [row] = await sql(
        `insert into outbox_events (id, type, occurred_at, data) values (gen_random_uuid(), 'OrderPlaced', now(), '{}') returning id`,
      );
      committedAt.set(row.id, performance.now());
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    while (lags.length < lagEvents) await new Promise((resolve) => setTimeout(resolve, 20));
    await messages.close();
    await nc.close();
    await relay.stop();

    lags.sort((a, b) => a - b);
    const lines = [
      `relay throughput: ${backlog} events in ${seconds.toFixed(2)} s = ${Math.round(backlog / seconds)} events/s (batch 100, one relay)`,
      `end-to-end lag COMMIT -> JetStream subscriber over ${lagEvents} events (EVENTS_RELAY_POLL_MS=${pollMs}): ` +
        `p50 ${percentile(lags, 50).toFixed(1)} ms, p99 ${percentile(lags, 99).toFixed(1)} ms, max ${lags.at(-1)?.toFixed(1)} ms`,
      `${os.cpus().length} CPUs, ${os.cpus()[0]?.model ?? 'unknown CPU'}, Node.js ${process.version}`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await orm.close(true);
    nats.stop();
    await database.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

void main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exitCode = 1;
});
