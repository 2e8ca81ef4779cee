import path from 'node:path';
import { Migrator } from '@mikro-orm/migrations';
import { defineConfig, type Options } from '@mikro-orm/postgresql';
import { MIGRATIONS } from '../../migrations';
import { Product } from '../catalog/product.entity';
import { OutboxEvent } from '../events/event.entity';
import { IdempotencyRecord } from '../idempotency/record.entity';
import { Order } from '../orders/order.entity';
import { OrderLine } from '../orders/order-line.entity';
import { projectRoot } from '../project-root';
import { RidingPostgreSqlDialect } from './transaction-riders';

/** Every entity the ORM knows; the migrations must agree with them. */
export const ENTITIES = [Product, Order, OrderLine, IdempotencyRecord, OutboxEvent];

export interface OrmOptions {
  readonly clientUrl: string;
  /** Largest number of pooled connections. */
  readonly poolSize?: number;
  /**
   * Longest wait for any lock, in milliseconds (PostgreSQL `lock_timeout`, set per connection).
   * It bounds how long a request waits for another process holding the same idempotency key.
   */
  readonly lockTimeoutMs?: number;
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
  const settings = [
    options.lockTimeoutMs ? `-c lock_timeout=${options.lockTimeoutMs}` : '',
    options.statementTimeoutMs ? `-c statement_timeout=${options.statementTimeoutMs}` : '',
  ].filter((setting) => setting !== '');
  return defineConfig({
    clientUrl: options.clientUrl,
    entities: ENTITIES,
    discovery: { warnWhenNoEntities: true },
    extensions: [Migrator],
    pool: { min: 0, max: options.poolSize ?? 20, idleTimeoutMillis: 30_000 },
    forceUtcTimezone: true,
    driverOptions: {
      // Lets the idempotency lookup ride in its transaction's BEGIN message and the record in its
      // COMMIT message (transaction-riders.ts).
      client: RidingPostgreSqlDialect,
      connection: {
        ...(settings.length > 0 ? { options: settings.join(' ') } : {}),
        // While the database is unreachable, requests fail within seconds instead of queueing.
        connectionTimeoutMillis: 5_000,
      },
      acquireConnectionTimeout: 5_000,
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
