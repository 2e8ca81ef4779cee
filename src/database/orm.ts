import { MikroORM } from '@mikro-orm/postgresql';
import { createOrmConfig, type OrmOptions } from './orm.config';

/** Connects the ORM; no schema is touched. */
export async function openOrm(options: OrmOptions): Promise<MikroORM> {
  return MikroORM.init(createOrmConfig(options));
}

/** Applies every pending migration; returns the names applied. */
export async function migrate(orm: MikroORM): Promise<string[]> {
  const applied = await orm.getMigrator().up();
  return applied.map((migration) => migration.name);
}
