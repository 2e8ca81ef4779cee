import { MikroORM } from '@mikro-orm/postgresql';
import { createOrmConfig, type OrmOptions } from './orm.config';

/** Connects the ORM; no schema is touched. */
export async function openOrm(options: OrmOptions): Promise<MikroORM> {
  return MikroORM.init(createOrmConfig(options));
}

/** Key of the advisory lock that serialises migrations of processes starting together. */
const MIGRATION_LOCK = 7_305_000;

/**
 * Applies every pending migration; returns the names applied. Processes starting at once on
 * one database take turns: the first migrates, the others find nothing pending. The migrator
 * prepares its own table on a second pooled connection, after the lock is held, so migrating
 * needs a pool of at least two.
 */
export async function migrate(orm: MikroORM): Promise<string[]> {
  const connection = orm.em.getConnection();
  return connection.transactional(async (trx) => {
    await connection.execute('select pg_advisory_xact_lock(?)', [MIGRATION_LOCK], 'run', trx);
    const applied = await orm.migrator.up({ transaction: trx });
    return applied.map((migration) => migration.name);
  });
}
