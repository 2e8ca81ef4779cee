import path from 'node:path';
import { Migrator } from '@mikro-orm/migrations';
import { defineConfig, type Options } from '@mikro-orm/postgresql';
import { MIGRATIONS } from '../../migrations';
import { Product } from '../catalog/product.entity';
import { IdempotencyRecord } from '../idempotency';
import { Order } from '../orders/order.entity';
import { OrderLine } from '../orders/order-line.entity';
import { projectRoot } from '../project-root';

/** Every entity the ORM knows; the migrations must agree with them. */
export const ENTITIES = [Product, Order, OrderLine, IdempotencyRecord];

export interface OrmOptions {
  readonly clientUrl: string;
  /** Largest number of pooled connections. */
  readonly poolSize?: number;
  /** PostgreSQL `statement_timeout` of every connection, in milliseconds; 0 or absent: none. */
  readonly statementTimeoutMs?: number;
  /** Receives the driver's connection warnings (default: dropped; the pool reconnects). */
  readonly onDriverWarning?: (message: string) => void;
  /** Called with every SQL statement sent, for statement counting in tests. */
  readonly onQuery?: (sql: string) => void;
}

/** The MikroORM configuration shared by the server, the tests and the CLI. */
export function createOrmConfig(options: OrmOptions): Options {
  const onQuery = options.onQuery;
  const warn = (message: unknown) => options.onDriverWarning?.(String(message));
  return defineConfig({
    clientUrl: options.clientUrl,
    entities: ENTITIES,
    discovery: { warnWhenNoEntities: true },
    extensions: [Migrator],
    // A request waits at most 5 s for a pooled connection, then fails instead of queueing.
    pool: { min: 0, max: options.poolSize ?? 20, idleTimeoutMillis: 30_000, acquireTimeoutMillis: 5_000 },
    forceUtcTimezone: true,
    driverOptions: {
      connection: {
        ...(options.statementTimeoutMs ? { options: `-c statement_timeout=${options.statementTimeoutMs}` } : {}),
        // While the database is unreachable, requests fail within seconds instead of queueing.
        connectionTimeoutMillis: 5_000,
      },
      // knex writes pool warnings to the console; they belong in the service's log.
      log: { warn: warn, error: warn, deprecate: warn, debug: () => {} },
    },
    allowGlobalContext: false,
    ensureDatabase: false,
    debug: false,
    onQuery: onQuery
      ? (sql: string) => {
          onQuery(sql);
          return sql;
        }
      : undefined,
    migrations: {
      // Migrations are listed in migrations/index.ts rather than discovered, so the server, the
      // CLI and the tests run the same list; `migration:create` writes new files to migrations/.
      migrationsList: MIGRATIONS,
      path: path.join(projectRoot(), 'migrations'),
      pathTs: path.join(projectRoot(), 'migrations'),
      tableName: 'mikro_orm_migrations',
      silent: true,
      transactional: true,
      allOrNothing: true,
      snapshot: false,
      emit: 'ts',
      fileName: (timestamp: string, name?: string) => `Migration${timestamp}${name ? `_${name}` : ''}`,
    },
  });
}
