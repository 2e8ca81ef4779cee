import type { EntityManager, MikroORM } from '@mikro-orm/postgresql';
import { ResultCodec } from './codec';
import type { DomainFailure } from './errors';
import { IdempotencyRecordResolver, IdempotencyRequest, idempotencyPlugin, idempotentDirective } from './graphql';
import { IdempotencyHandler } from './handler';
import type { IdempotencyObserver } from './observer';
import { PostgresRecordStore } from './postgres.store';
import { type PurgeOptions, type PurgeResult, purgeExpired, startPurgeJob } from './purge';
import { IdempotencyRecord } from './record.entity';

export { IdempotencyError } from './errors';
export { type IdempotencyContext, IdempotencyRequest, Idempotent, type IdempotentOptions } from './graphql';
export { IdempotencyKeyArg } from './key';
export { type IdempotencyObserver, ObservedOutcome } from './observer';
export type { PurgeResult } from './purge';
export { IdempotencyRecord } from './record.entity';
export type { CreatedResource } from './store';

/** Options of {@link createIdempotency}; each absent one takes its default. */
export interface IdempotencyOptions {
  /** How long an outcome is kept and replayed. Default 86400 s. */
  readonly ttlSeconds?: number;
  /** How long a tombstone (no payload) answers late retries with IDEMPOTENCY_KEY_EXPIRED after an outcome expires. Default 2592000 s (30 days); 0: none. */
  readonly tombstoneSeconds?: number;
  /** How long a duplicate waits for the first request with its key, here or in another process. Default 10000 ms. */
  readonly waitMs?: number;
  /** Encrypts new results with AES-256-GCM (32 bytes). */
  readonly encryptionKey?: Buffer;
  /** Keys that wrote earlier results, still accepted for reading. */
  readonly previousEncryptionKeys?: readonly Buffer[];
  /** Finished records kept in memory for replays. Default 10000; 0 turns the cache off. */
  readonly cacheSize?: number;
  readonly observer?: IdempotencyObserver;
  /** The stored form of an error a mutation threw, or undefined when it must not be stored. Default: none is stored. */
  readonly domainFailure?: (error: unknown) => DomainFailure | undefined;
}

/** The engine, wired: what the host registers with Apollo, TypeGraphQL and MikroORM. */
export type Idempotency = ReturnType<typeof createIdempotency>;

/** Builds the engine on PostgreSQL; every option has a default. */
export function createIdempotency(options: IdempotencyOptions = {}) {
  const store = new PostgresRecordStore();
  const handler = new IdempotencyHandler<EntityManager>({
    store,
    codec: new ResultCodec(options.encryptionKey, options.previousEncryptionKeys),
    ttlSeconds: options.ttlSeconds ?? 86_400,
    tombstoneSeconds: options.tombstoneSeconds ?? 2_592_000,
    waitMs: options.waitMs ?? 10_000,
    cacheSize: options.cacheSize ?? 10_000,
    observer: options.observer ?? { outcome: () => {}, waited: () => {}, overhead: () => {} },
    domainFailure: options.domainFailure ?? (() => undefined),
  });
  /** Deletes rows whose tombstone ended and drops expired results, in paced batches; returns how many of each. */
  const purge = (orm: MikroORM, purgeOptions?: PurgeOptions) => purgeExpired(store, () => orm.em.fork(), purgeOptions);
  return {
    plugin: idempotencyPlugin(),
    resolvers: [IdempotencyRecordResolver] as const,
    directives: [idempotentDirective] as const,
    entities: [IdempotencyRecord] as const,
    /** The per-request state the GraphQL context carries as `idempotency`. */
    request: (scope: string | null, headerKey: string | undefined) => new IdempotencyRequest(handler, scope, headerKey),
    purge,
    /** Purges every `intervalSeconds` (0: never); returns a function that stops the job. */
    startPurgeJob: (orm: MikroORM, intervalSeconds: number, onPurged: (purged: PurgeResult) => void, onError: (error: unknown) => void) =>
      startPurgeJob(() => purge(orm), intervalSeconds, onPurged, onError),
  };
}
