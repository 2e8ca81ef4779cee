import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { IdempotencyObserver, ObservedOutcome } from '../idempotency';

/** Connection pool occupancy, read at scrape time. */
export interface PoolStats {
  readonly used: number;
  readonly free: number;
  readonly pending: number;
  readonly max: number;
}

export interface MetricsSources {
  /** Pool occupancy; omitted when unknown. */
  readonly pool?: () => Promise<PoolStats>;
  /** Approximate number of idempotency records, from PostgreSQL's statistics. */
  readonly liveRecords?: () => Promise<number>;
}

/** The service's Prometheus metrics, in a registry of their own. */
export class Metrics {
  readonly registry = new Registry();

  readonly idempotencyRequests = new Counter({
    name: 'idempotency_requests_total',
    help: 'Idempotent mutation calls by operation and outcome.',
    labelNames: ['operation', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly duplicateWait = new Histogram({
    name: 'idempotency_duplicate_wait_seconds',
    help: 'Time a duplicate request waited for the first request with its key.',
    buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  readonly engineOverhead = new Histogram({
    name: 'idempotency_engine_overhead_seconds',
    help: 'Time the idempotency engine added around a mutation (lookup, fingerprint, record write).',
    labelNames: ['operation'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });

  readonly recordsPurged = new Counter({
    name: 'idempotency_records_purged_total',
    help: 'Expired idempotency records deleted by the purge.',
    registers: [this.registry],
  });

  readonly graphqlDuration = new Histogram({
    name: 'graphql_request_duration_seconds',
    help: 'GraphQL request duration by root field of the schema (e.g. mutation.createOrder) and result.',
    labelNames: ['operation', 'result'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [this.registry],
  });

  constructor(sources: MetricsSources = {}) {
    collectDefaultMetrics({ register: this.registry });
    const { pool, liveRecords } = sources;
    if (pool) {
      new Gauge({
        name: 'db_pool_connections',
        help: 'Database pool connections by state (used, free, pending acquisitions, max).',
        labelNames: ['state'] as const,
        registers: [this.registry],
        async collect() {
          const stats = await pool();
          for (const state of ['used', 'free', 'pending', 'max'] as const) this.set({ state }, stats[state]);
        },
      });
    }
    if (liveRecords) {
      new Gauge({
        name: 'idempotency_records_estimate',
        help: 'Approximate number of stored idempotency records (live rows in PostgreSQL statistics, not count(*)).',
        registers: [this.registry],
        async collect() {
          this.set(await liveRecords().catch(() => Number.NaN));
        },
      });
    }
  }

  /** The engine's measurements, recorded here. */
  idempotencyObserver(): IdempotencyObserver {
    return {
      outcome: (operation: string, outcome: ObservedOutcome) => this.idempotencyRequests.inc({ operation, outcome }),
      waited: (seconds: number) => this.duplicateWait.observe(seconds),
      overhead: (operation: string, seconds: number) => this.engineOverhead.observe({ operation }, seconds),
    };
  }
}
