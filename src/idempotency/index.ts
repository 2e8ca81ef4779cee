import type { EntityManager, MikroORM } from '@mikro-orm/postgresql';
import { ResultCodec } from './codec';
import { checkWindows, IdempotencyRecordResolver, IdempotencyRequest, idempotencyPlugin, idempotentDirective } from './graphql';
import { type HandlerOptions, IdempotencyHandler } from './handler';
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

/** Options of {@link createIdempotency}, each documented on the handler's; encryption keys are 32 bytes for AES-256-GCM. */
export type IdempotencyOptions = Partial<Omit<HandlerOptions<EntityManager>, 'store' | 'codec'>> & {
  /** Encrypts new results. */
  readonly encryptionKey?: Buffer;
  /** Keys that wrote earlier results, still accepted for reading. */
  readonly previousEncryptionKeys?: readonly Buffer[];
};

/** The engine, wired: what the host registers with Apollo, TypeGraphQL and MikroORM. */
export type Idempotency = ReturnType<typeof createIdempotency>;

/**
 * Builds the engine on PostgreSQL. Defaults: ttlSeconds 86400, tombstoneSeconds 2592000 (30 days), waitMs 10000,
 * cacheSize 10000, no encryption, no observer, no domain failure stored. Throws a RangeError for windows that are not whole seconds.
 */
export function createIdempotency(options: IdempotencyOptions = {}) {
  checkWindows('createIdempotency', options);
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
