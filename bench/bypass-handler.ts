import { IdempotencyHandler, IdempotencyStore } from '../src/idempotency';
import type { Completed, Execution } from '../src/idempotency/idempotency.handler';

/**
 * The engine taken out, for the baseline only (bench/server.ts --mode bypass; production code
 * never imports this file). The mutation runs in a transaction of its own exactly as the engine
 * would run it, but there is no lookup, no fingerprint, no snapshot, no record and no cache:
 * what remains is the same resolver, service and transaction path minus the engine.
 */
export class BypassHandler extends IdempotencyHandler {
  constructor() {
    super(new IdempotencyStore(), { cacheSize: 0 });
  }

  override async execute<T>(execution: Execution<T>): Promise<Completed> {
    const value = await execution.em.transactional((tx) => execution.run(tx));
    // The response keeps its shape (extensions.idempotency), so both servers send the same bytes.
    const now = new Date().toISOString();
    return { value, marker: { path: execution.path, key: execution.key, replayed: false, firstExecutedAt: now, expiresAt: now } };
  }
}
