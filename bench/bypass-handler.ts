import type { EntityManager } from '@mikro-orm/postgresql';
import { createIdempotency, type Idempotency, IdempotencyRequest } from '../src/idempotency';
import { ResultCodec } from '../src/idempotency/codec';
import { type Completed, type Execution, IdempotencyHandler } from '../src/idempotency/handler';
import { PostgresRecordStore } from '../src/idempotency/postgres.store';

/**
 * The engine taken out, for the baseline only (bench/server.ts --mode bypass; production code
 * never imports this file). The mutation runs in a transaction of its own, but there is no
 * lookup, no fingerprint, no record and no cache: what remains is the same resolver, service
 * and transaction path minus the engine.
 */
class BypassHandler extends IdempotencyHandler<EntityManager> {
  constructor() {
    const silent = { outcome: () => {}, waited: () => {}, overhead: () => {} };
    super({
      store: new PostgresRecordStore(),
      codec: new ResultCodec(),
      ttlSeconds: 1,
      tombstoneSeconds: 0,
      waitMs: 0,
      cacheSize: 0,
      observer: silent,
      domainFailure: () => undefined,
    });
  }

  override async execute(execution: Execution<EntityManager>): Promise<Completed> {
    const value = await execution.db.transactional((tx) => execution.run(tx));
    // The response keeps its shape (extensions.idempotency), so both servers send the same bytes.
    const now = new Date().toISOString();
    return {
      value,
      marker: { path: execution.path, key: execution.key, replayed: false, firstExecutedAt: now, expiresAt: now, forgottenAt: now },
    };
  }
}

/** The engine's wiring with every request handled by {@link BypassHandler}. */
export function bypassIdempotency(): Idempotency {
  const handler = new BypassHandler();
  return { ...createIdempotency(), request: (scope, headerKey) => new IdempotencyRequest(handler, scope, headerKey) };
}
