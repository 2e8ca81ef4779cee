import { AsyncLocalStorage } from 'node:async_hooks';
import { type Knex, PostgreSqlKnexDialect } from '@mikro-orm/postgresql';
import type { QueryResult } from 'pg';

/**
 * A statement sent to PostgreSQL in the same message as its transaction's BEGIN or COMMIT, so
 * that it costs no round trip of its own.
 */
export interface Rider {
  readonly sql: string;
  /**
   * The statement's result, once its message has run: for a BEGIN rider, when the transaction
   * has begun; for a COMMIT rider, when it has committed.
   */
  result?: QueryResult;
}

/** A rider offered to the first transaction begun in a scope of {@link rideWithBegin}. */
interface BeginOffer extends Rider {
  /** Set by the first transaction begun in the scope, whether or not it could carry the rider. */
  claimed: boolean;
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

const commitRiders = new WeakMap<object, Rider>();
const beginOffers = new AsyncLocalStorage<BeginOffer>();

/**
 * MikroORM's PostgreSQL dialect for knex, whose top-level transactions can carry one statement
 * in their BEGIN message ({@link rideWithBegin}) and one in their COMMIT message
 * ({@link rideWithCommit}).
 *
 * Each message is one simple-protocol query: `BEGIN; <statement>` or `<statement>; COMMIT`. If
 * the statement fails, PostgreSQL skips the rest of the message and leaves the transaction
 * aborted: it is rolled back, on the same connection and before knex releases it, and the
 * transaction fails with the statement's error, as a failed BEGIN or COMMIT would.
 */
export class RidingPostgreSqlDialect extends PostgreSqlKnexDialect {
  // knex's (untyped) factory of transaction objects.
  transaction(container: unknown, config: unknown, outerTx: unknown): unknown {
    const transaction = super.transaction(container, config, outerTx) as KnexTransaction;
    const offer = beginOffers.getStore();
    const offered = offer !== undefined && !offer.claimed;
    if (offered) offer.claimed = true;
    // A savepoint is neither begun nor committed: only a top-level transaction carries riders.
    if (outerTx) return transaction;
    // A transaction with an isolation level or access mode keeps knex's own BEGIN.
    if (offered && !transaction.isolationLevel && !transaction.readOnly) carryWithBegin(transaction, offer);
    carryWithCommit(transaction);
    return transaction;
  }
}

function carryWithBegin(transaction: KnexTransaction, rider: Rider): void {
  transaction.begin = (connection) =>
    connection.query(`BEGIN;\n${rider.sql}`).then(
      (results) => {
        rider.result = Array.isArray(results) ? results[1] : results;
      },
      // The statement failed after BEGIN: the connection goes back to the pool out of the
      // aborted transaction. knex then fails the transaction with the statement's error.
      (error: unknown) =>
        connection.query('ROLLBACK').then(
          () => Promise.reject(error),
          () => Promise.reject(error),
        ),
    );
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
 * Runs `work`, offering `sql` to the first transaction that `work` begins (on a connection with
 * {@link RidingPostgreSqlDialect}): if it is a top-level transaction without an isolation level
 * or access mode, `sql` goes in its BEGIN message and its result is on the returned rider as soon
 * as the transaction has begun. Otherwise the rider keeps no result, and the caller sends the
 * statement itself. Transactions begun later in `work` are not offered it.
 * `sql` is sent as it is: values must already be literals.
 */
export function rideWithBegin<T>(sql: string, work: (rider: Rider) => Promise<T>): Promise<T> {
  const offer: BeginOffer = { sql, claimed: false };
  return beginOffers.run(offer, () => work(offer));
}

/**
 * Makes `sql` ride with the COMMIT of `trx`; its result is on the rider once the transaction
 * has committed. Returns undefined when `trx` cannot carry it (a savepoint, or a connection
 * without {@link RidingPostgreSqlDialect}): the caller then sends the statement itself.
 * `sql` is sent as it is: values must already be literals.
 */
export function rideWithCommit(trx: Knex.Transaction, sql: string): Rider | undefined {
  const nested = (trx as Knex.Transaction & { parentTransaction?: unknown }).parentTransaction !== undefined;
  if (nested || !(trx.client instanceof RidingPostgreSqlDialect)) return undefined;
  if (commitRiders.has(trx)) throw new Error('a transaction carries at most one statement with its COMMIT');
  const rider: Rider = { sql };
  commitRiders.set(trx, rider);
  return rider;
}
