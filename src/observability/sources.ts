import type { MikroORM } from '@mikro-orm/postgresql';
import type { MetricsSources, PoolStats } from './metrics';

/** Pool occupancy and record estimates read from the ORM's connection. */
export function ormMetricsSources(orm: MikroORM): MetricsSources {
  const max = orm.config.get('pool')?.max ?? 0;
  return {
    pool: async (): Promise<PoolStats> => {
      // The node-postgres pool behind the connection, through MikroORM's accessor for it.
      const pool = await orm.em.getConnection().getNativeClient();
      return { used: pool.totalCount - pool.idleCount, free: pool.idleCount, pending: pool.waitingCount, max };
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
