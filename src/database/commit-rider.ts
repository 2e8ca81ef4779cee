import { type Knex, PostgreSqlKnexDialect } from '@mikro-orm/postgresql';
import type { QueryResult } from 'pg';

/**
 * A statement sent to PostgreSQL in the same message as its transaction's COMMIT, so that it
 * costs no round trip of its own.
 */
export interface CommitRider {
  readonly sql: string;
  /** The statement's result, once the message has run and the transaction has committed. */
  result?: QueryResult;
}

/** The pg connection knex hands to a transaction's commit. */
interface Connection {
  query(sql: string): Promise<QueryResult | QueryResult[]>;
}

/** The parts of knex's transaction object this file relies on (knex does not type them). */
interface KnexTransaction {
  /** The knex object the transaction's queries run on (MikroORM's transaction context). */
  transactor: object;
  commit(connection: Connection, value: unknown): Promise<unknown>;
  rollback(connection: Connection, error: unknown): Promise<unknown>;
  _completed: boolean;
  _resolver(value: unknown): void;
}

const riders = new WeakMap<object, CommitRider>();

/**
 * MikroORM's PostgreSQL dialect for knex, whose top-level transactions can carry one statement
 * in their COMMIT message ({@link rideWithCommit}).
 *
 * The message is `<statement>; COMMIT`, sent as one simple-protocol query. If the statement
 * fails, PostgreSQL skips the rest of the message and the transaction is left aborted: it is
 * rolled back, on the same connection and before knex releases it, and the transaction fails
 * with the statement's error, as a failed COMMIT would.
 */
export class RidingPostgreSqlDialect extends PostgreSqlKnexDialect {
  // knex's (untyped) factory of transaction objects.
  transaction(container: unknown, config: unknown, outerTx: unknown): unknown {
    const transaction = super.transaction(container, config, outerTx) as KnexTransaction;
    // A savepoint is released, not committed: only a top-level transaction can carry a rider.
    if (outerTx) return transaction;
    const commit = transaction.commit.bind(transaction);
    transaction.commit = (connection, value) => {
      const rider = riders.get(transaction.transactor);
      if (!rider) return commit(connection, value);
      riders.delete(transaction.transactor);
      return connection.query(`${rider.sql};\nCOMMIT`).then(
        (results) => {
          rider.result = Array.isArray(results) ? results[0] : results;
          transaction._completed = true;
          transaction._resolver(value);
        },
        (error: unknown) => transaction.rollback(connection, error),
      );
    };
    return transaction;
  }
}

/**
 * Makes `sql` ride with the COMMIT of `trx`; its result is on the rider once the transaction
 * has committed. Returns undefined when `trx` cannot carry it (a savepoint, or a connection
 * without {@link RidingPostgreSqlDialect}): the caller then sends the statement itself.
 * `sql` is sent as it is: values must already be literals.
 */
export function rideWithCommit(trx: Knex.Transaction, sql: string): CommitRider | undefined {
  const nested = (trx as Knex.Transaction & { parentTransaction?: unknown }).parentTransaction !== undefined;
  if (nested || !(trx.client instanceof RidingPostgreSqlDialect)) return undefined;
  if (riders.has(trx)) throw new Error('a transaction carries at most one statement with its COMMIT');
  const rider: CommitRider = { sql };
  riders.set(trx, rider);
  return rider;
}
