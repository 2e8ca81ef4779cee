import { AsyncLocalStorage } from 'node:async_hooks';
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

/** A pooled connection on which {@link beginWith} has begun a transaction. */
interface BegunConnection {
  readonly connection: Connection;
  /** Set by the first transaction begun in the scope of {@link BegunTransaction.continueIn}. */
  offered: boolean;
  /** Set when that transaction took the connection over, and with it the ending of its transaction. */
  taken: boolean;
}

/** A transaction begun by {@link beginWith}, with its BEGIN message's statement run. */
export interface BegunTransaction {
  /** The result of the statement sent with the BEGIN. */
  readonly result: QueryResult;
  /**
   * Runs `work`, whose first transaction (`em.transactional` on the same ORM) continues this one
   * on its connection instead of beginning another, and commits or rolls back as usual. A first
   * transaction that is a savepoint, or has an isolation level or access mode, begins its own,
   * and this one rolls back once `use` has finished.
   */
  continueIn<T>(work: () => Promise<T>): Promise<T>;
}

/** The pg connection knex hands to a transaction's begin and commit. */
interface Connection {
  query(sql: string): Promise<QueryResult | QueryResult[]>;
}

/** The parts of knex's transaction object this file relies on (knex does not type them). */
interface KnexTransaction {
  /** The knex object the transaction's queries run on (MikroORM's transaction context). */
  transactor: object;
  isolationLevel?: string;
  readOnly?: boolean;
  begin(connection: Connection): Promise<unknown>;
  commit(connection: Connection, value: unknown): Promise<unknown>;
  rollback(connection: Connection, error: unknown): Promise<unknown>;
  _completed: boolean;
  _resolver(value: unknown): void;
}

const commitRiders = new WeakMap<object, CommitRider>();
const begunConnections = new AsyncLocalStorage<BegunConnection>();

/**
 * MikroORM's PostgreSQL dialect for knex, whose top-level transactions can continue a
 * transaction begun with a statement in its BEGIN message ({@link beginWith}) and carry one
 * statement in their COMMIT message ({@link rideWithCommit}).
 *
 * Each such message is one simple-protocol query: `BEGIN; <statement>` or
 * `<statement>; COMMIT`. If the statement fails, PostgreSQL skips the rest of the message and
 * leaves the transaction aborted: it is rolled back, on the same connection and before the
 * connection goes back to the pool, and the caller gets the statement's error, as from a failed
 * BEGIN or COMMIT.
 */
export class RidingPostgreSqlDialect extends PostgreSqlKnexDialect {
  // knex's (untyped) factory of transaction objects.
  transaction(container: unknown, config: unknown, outerTx: unknown): unknown {
    const transaction = super.transaction(container, config, outerTx) as KnexTransaction;
    const begun = begunConnections.getStore();
    const offered = begun !== undefined && !begun.offered;
    if (offered) begun.offered = true;
    // A savepoint is neither begun nor committed: only a top-level transaction carries riders.
    if (outerTx) return transaction;
    // A transaction with an isolation level or access mode needs a BEGIN of its own.
    if (offered && !transaction.isolationLevel && !transaction.readOnly) {
      begun.taken = true;
      // knex runs a transaction given a connection on it, and leaves its release to the giver.
      (config as { connection?: Connection }).connection = begun.connection;
      transaction.begin = () => Promise.resolve();
    }
    carryWithCommit(transaction);
    return transaction;
  }
}

function carryWithCommit(transaction: KnexTransaction): void {
  const commit = transaction.commit.bind(transaction);
  transaction.commit = (connection, value) => {
    const rider = commitRiders.get(transaction.transactor);
    if (!rider) return commit(connection, value);
    commitRiders.delete(transaction.transactor);
    return connection.query(`${rider.sql};\nCOMMIT`).then(
      (results) => {
        rider.result = Array.isArray(results) ? results[0] : results;
        transaction._completed = true;
        transaction._resolver(value);
      },
      (error: unknown) => transaction.rollback(connection, error),
    );
  };
}

/**
 * Begins a transaction on a connection of `knex`'s pool, sending `sql` in the same message as the
 * BEGIN, and hands the transaction to `use`: `use` reads the statement's result and either
 * returns, and the transaction rolls back (it wrote nothing), or continues it in MikroORM's next
 * transaction ({@link BegunTransaction.continueIn}). Either way the connection goes back to the
 * pool out of the transaction when `use` has finished. Throws the statement's error if it fails.
 * `sql` is sent as it is: values must already be literals.
 */
export async function beginWith<T>(knex: Knex, sql: string, use: (transaction: BegunTransaction) => Promise<T>): Promise<T> {
  if (!(knex.client instanceof RidingPostgreSqlDialect)) throw new Error('beginWith needs a connection with RidingPostgreSqlDialect');
  const connection: Connection = await knex.client.acquireConnection();
  const begun: BegunConnection = { connection, offered: false, taken: false };
  try {
    const results = await connection.query(`BEGIN;\n${sql}`);
    return await use({
      result: (results as QueryResult[])[1] as QueryResult,
      continueIn: (work) => begunConnections.run(begun, work),
    });
  } finally {
    // Unless a transaction of knex took it over and ended it, the transaction ends here: it
    // wrote nothing, or the statement failed and left it aborted. A broken connection fails
    // the ROLLBACK too, and the pool discards it.
    if (!begun.taken) await connection.query('ROLLBACK').catch(() => undefined);
    // knex labels a connection it was given with its transaction's id, and leaves the label.
    delete (connection as { __knexTxId?: string }).__knexTxId;
    await knex.client.releaseConnection(connection);
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
  if (commitRiders.has(trx)) throw new Error('a transaction carries at most one statement with its COMMIT');
  const rider: CommitRider = { sql };
  commitRiders.set(trx, rider);
  return rider;
}
