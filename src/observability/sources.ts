import type { MikroORM } from '@mikro-orm/postgresql';
import type { MetricsSources, PoolStats } from './metrics';

interface TarnPool {
  numUsed(): number;
  numFree(): number;
  numPendingAcquires(): number;
  max: number;
}

/** Pool occupancy and record estimates read from the ORM's connection. */
export function ormMetricsSources(orm: MikroORM): MetricsSources {
  return {
    pool: (): PoolStats => {
      const pool = (orm.em.getConnection().getKnex().client as { pool?: TarnPool }).pool;
      return pool
        ? { used: pool.numUsed(), free: pool.numFree(), pending: pool.numPendingAcquires(), max: pool.max }
        : { used: 0, free: 0, pending: 0, max: 0 };
    },
    liveRecords: async () => {
      // Live rows as PostgreSQL's cumulative statistics count them: kept up to date by every
      // committed insert and delete, so it is right before the first ANALYZE (when the planner's
      // pg_class.reltuples is still -1) and cheap at any table size, unlike count(*).
      const rows = await orm.em
        .fork()
        .execute<{ estimate: string }[]>(
          "select coalesce(sum(n_live_tup), 0)::bigint as estimate from pg_stat_user_tables where relid = to_regclass('idempotency_records')",
        );
      return Number(rows[0]?.estimate ?? 0);
    },
  };
}
