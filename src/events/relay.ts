import { LockMode } from '@mikro-orm/core';
import type { MikroORM } from '@mikro-orm/postgresql';
import { connect, type JetStreamClient, type NatsConnection, nanos } from 'nats';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { OutboxEvent } from './event.entity';

/** The JetStream stream the relay publishes to, and its subjects (`events.<Type>`). */
export const STREAM = 'EVENTS';
export const SUBJECT_PREFIX = 'events';

export interface RelayOptions {
  readonly natsUrl: string;
  /** Events published per transaction. */
  readonly batchSize: number;
  /** Pause of an idle relay before it looks again, in milliseconds. */
  readonly pollMs: number;
  /** Published events older than this many seconds are deleted; 0 keeps them. */
  readonly retentionSeconds: number;
  readonly logger: Logger;
  /** Where the relay's metrics are registered; none when absent. */
  readonly registry?: Registry;
}

/** A running relay; `stop` lets the current batch finish and closes the NATS connection. */
export interface Relay {
  stop(): Promise<void>;
}

const PURGE_EVERY_MS = 60_000;
const FAILURE_BACKOFF_MS = 1_000;
// JetStream drops a message whose Nats-Msg-Id it saw within this window: a batch republished
// after a crash between publish and marking is stored once.
const DUPLICATE_WINDOW_MS = 10 * 60_000;

/**
 * Publishes the outbox to JetStream. Each batch is one transaction: unpublished events are
 * locked with FOR UPDATE SKIP LOCKED (so several relays share the work without taking the same
 * event), published with `Nats-Msg-Id` = event id, and marked published only after JetStream
 * acknowledged them. A crash at any point leaves the batch unmarked or marked, never lost.
 */
export async function startRelay(orm: MikroORM, options: RelayOptions): Promise<Relay> {
  const nats = await connect({ servers: options.natsUrl, name: 'outbox-relay', maxReconnectAttempts: -1 });
  await ensureStream(nats);
  const js = nats.jetstream();
  const metrics = relayMetrics(options.registry);
  let running = true;
  let wake: (() => void) | undefined;
  let lastPurge = 0;

  const loop = async () => {
    while (running) {
      let published = 0;
      try {
        published = await publishBatch(orm, js, options.batchSize);
        metrics.published.inc(published);
        metrics.lag.set(await oldestUnpublishedAge(orm));
        if (options.retentionSeconds > 0 && Date.now() - lastPurge >= PURGE_EVERY_MS) {
          lastPurge = Date.now();
          metrics.purged.inc(await purgePublished(orm, options.retentionSeconds));
        }
      } catch (error) {
        metrics.failures.inc();
        options.logger.warn({ err: error }, 'event relay batch failed; it is retried');
        await pause(FAILURE_BACKOFF_MS);
        continue;
      }
      if (published < options.batchSize) await pause(options.pollMs);
    }
  };
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  const done = loop();
  options.logger.info({ stream: STREAM }, 'event relay started');
  return {
    stop: async () => {
      running = false;
      wake?.();
      await done;
      await nats.drain();
    },
  };
}

/** Creates the EVENTS stream when it does not exist; an existing one is left as configured. */
async function ensureStream(nats: NatsConnection): Promise<void> {
  const manager = await nats.jetstreamManager();
  const existing = await manager.streams.find(`${SUBJECT_PREFIX}.>`).catch(() => undefined);
  if (existing) return;
  await manager.streams.add({ name: STREAM, subjects: [`${SUBJECT_PREFIX}.>`], duplicate_window: nanos(DUPLICATE_WINDOW_MS) });
}

/** Publishes and marks one batch in one transaction; returns how many events it published. */
export async function publishBatch(orm: MikroORM, js: JetStreamClient, batchSize: number): Promise<number> {
  return orm.em.fork().transactional(async (em) => {
    const events = await em.find(
      OutboxEvent,
      { publishedAt: null },
      { orderBy: { seq: 'asc' }, limit: batchSize, lockMode: LockMode.PESSIMISTIC_PARTIAL_WRITE },
    );
    if (events.length === 0) return 0;
    await Promise.all(
      events.map((event) =>
        js.publish(`${SUBJECT_PREFIX}.${event.type}`, Buffer.from(JSON.stringify(messageOf(event))), { msgID: event.id }),
      ),
    );
    await em
      .createQueryBuilder(OutboxEvent)
      .update({ publishedAt: new Date() })
      .where({ seq: { $in: events.map((event) => event.seq) } })
      .execute();
    return events.length;
  });
}

/** The JSON body of a published event: the same fields as the feed's `Event`. */
function messageOf(event: OutboxEvent): Record<string, unknown> {
  return { id: event.id, type: event.type, occurredAt: event.occurredAt.toISOString(), data: event.data };
}

async function oldestUnpublishedAge(orm: MikroORM): Promise<number> {
  const oldest = await orm.em.fork().findOne(OutboxEvent, { publishedAt: null }, { orderBy: { seq: 'asc' }, fields: ['occurredAt'] });
  return oldest ? Math.max(0, (Date.now() - oldest.occurredAt.getTime()) / 1000) : 0;
}

/** Deletes events published more than `retentionSeconds` ago; returns how many. */
export async function purgePublished(orm: MikroORM, retentionSeconds: number): Promise<number> {
  const cutoff = new Date(Date.now() - retentionSeconds * 1000);
  return orm.em.fork().nativeDelete(OutboxEvent, { publishedAt: { $lt: cutoff } });
}

function relayMetrics(registry: Registry | undefined) {
  const registers = registry ? [registry] : [];
  return {
    published: new Counter({ name: 'events_relay_published_total', help: 'Events published to JetStream and marked.', registers }),
    failures: new Counter({ name: 'events_relay_failures_total', help: 'Relay batches that failed and were retried.', registers }),
    purged: new Counter({ name: 'events_purged_total', help: 'Published events deleted after the retention period.', registers }),
    lag: new Gauge({ name: 'events_relay_lag_seconds', help: 'Age of the oldest event not yet published.', registers }),
  };
}
