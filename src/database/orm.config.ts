import path from 'node:path';
import { DefaultLogger, type LogContext, type LoggerNamespace } from '@mikro-orm/core';
import { ReflectMetadataProvider } from '@mikro-orm/decorators/legacy';
import { Migrator } from '@mikro-orm/migrations';
import { defineConfig, type Options } from '@mikro-orm/postgresql';
import { MIGRATIONS } from '../../migrations';
import { Product } from '../catalog/product.entity';
import { OutboxEvent } from '../events/event.entity';
import { IdempotencyRecord } from '../idempotency';
import { Order } from '../orders/order.entity';
import { OrderLine } from '../orders/order-line.entity';
import { projectRoot } from '../project-root';

/** Every entity the ORM knows; the migrations must agree with them. */
export const ENTITIES = [Product, Order, OrderLine, IdempotencyRecord, OutboxEvent];

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
  const onWarning = options.onDriverWarning;
  return defineConfig({
    clientUrl: options.clientUrl,
    entities: ENTITIES,
    // The entities use legacy decorators whose property types come from emitted metadata.
    metadataProvider: ReflectMetadataProvider,
    discovery: { warnWhenNoEntities: true },
    extensions: [Migrator],
    pool: { min: 0, max: options.poolSize ?? 20, idleTimeoutMillis: 30_000 },
    forceUtcTimezone: true,
    // Passed to node-postgres's Pool, whose connection timeout bounds both waiting for a pooled
    // connection and opening one: a request fails within 5 s instead of queueing while the
    // database is unreachable or every connection is busy.
    driverOptions: {
      connectionTimeoutMillis: 5_000,
      ...(options.statementTimeoutMs ? { statement_timeout: options.statementTimeoutMs } : {}),
    },
    // The driver reports lost connections as warnings; they belong in the service's log.
    loggerFactory: onWarning ? (loggerOptions) => new WarningForwardingLogger(loggerOptions, onWarning) : undefined,
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

/** The default logger, except that warnings go to the given callback whatever the debug mode. */
class WarningForwardingLogger extends DefaultLogger {
  constructor(
    options: ConstructorParameters<typeof DefaultLogger>[0],
    private readonly onWarning: (message: string) => void,
  ) {
    super(options);
  }

  override warn(_namespace: LoggerNamespace | string, message: string, _context?: LogContext): void {
    this.onWarning(message);
  }
}
