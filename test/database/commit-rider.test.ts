import type { EntityManager, Knex, MikroORM } from '@mikro-orm/postgresql';
import { Client } from 'pg';
import { rideWithCommit } from '../../src/database/commit-rider';
import { openOrm } from '../../src/database/orm';
import { createTestDatabase, dropTestDatabase } from '../support/database';

/**
 * A statement riding with its transaction's COMMIT, on a real PostgreSQL through MikroORM's own
 * transactions. One pooled connection, so every test also shows the connection it leaves behind.
 */
describe('a statement sent with its transaction COMMIT', () => {
  let databaseUrl: string;
  let orm: MikroORM;
  /** Every text pg sent to the server while recording, one entry per message. */
  let sent: string[] | undefined;
  let query: jest.SpyInstance;

  beforeAll(async () => {
    databaseUrl = await createTestDatabase();
    orm = await openOrm({ clientUrl: databaseUrl, poolSize: 1 });
    await orm.em.getConnection().execute('create table ridden (v int primary key, label text)');
    // Records what the real client sends, and sends it.
    const original = Client.prototype.query;
    query = jest.spyOn(Client.prototype, 'query').mockImplementation(function (this: Client, ...args: unknown[]) {
      const [first] = args as [string | { text: string }];
      sent?.push(typeof first === 'string' ? first : first.text);
      return (original as (...a: unknown[]) => unknown).apply(this, args);
    } as typeof original);
  });
  afterAll(async () => {
    query.mockRestore();
    await orm.close(true);
    await dropTestDatabase(databaseUrl);
  });
  beforeEach(async () => {
    await orm.em.getConnection().execute('truncate ridden');
  });

  async function rows(): Promise<{ v: number; label: string | null }[]> {
    return orm.em.getConnection().execute('select v, label from ridden order by v');
  }

  function ride(tx: EntityManager, sql: string) {
    const rider = rideWithCommit(tx.getTransactionContext<Knex.Transaction>() as Knex.Transaction, sql);
    if (!rider) throw new Error('the transaction could not carry the statement');
    return rider;
  }

  it('sends the statement and COMMIT as one message and hands back its result', async () => {
    sent = [];
    const rider = await orm.em.fork().transactional(async (tx) => {
      await tx.getConnection().execute('insert into ridden (v) values (1)', [], 'run', tx.getTransactionContext());
      return ride(tx, "insert into ridden (v, label) values (2, 'what? $1 ?') returning v, label");
    });
    const messages = sent;
    sent = undefined;

    expect(messages.at(-1)).toBe("insert into ridden (v, label) values (2, 'what? $1 ?') returning v, label;\nCOMMIT");
    expect(messages.filter((text) => /commit/i.test(text))).toHaveLength(1);
    expect(rider.result?.rows).toEqual([{ v: 2, label: 'what? $1 ?' }]);
    expect(await rows()).toEqual([
      { v: 1, label: null },
      { v: 2, label: 'what? $1 ?' },
    ]);
  });

  it('rolls the whole transaction back when the statement fails, and leaves the connection clean', async () => {
    await orm.em.getConnection().execute('insert into ridden (v) values (7)');
    let rider: ReturnType<typeof ride> | undefined;
    const failed = orm.em.fork().transactional(async (tx) => {
      await tx.getConnection().execute('insert into ridden (v) values (8)', [], 'run', tx.getTransactionContext());
      rider = ride(tx, 'insert into ridden (v) values (7)');
    });

    await expect(failed).rejects.toMatchObject({ code: '23505', constraint: 'ridden_pkey' });
    expect(rider?.result).toBeUndefined();
    // Neither the transaction's own write nor the statement's stayed; the one pooled connection
    // is out of the aborted transaction and serves the next one.
    expect(await rows()).toEqual([{ v: 7, label: null }]);
    await orm.em.fork().transactional(async (tx) => {
      await tx.getConnection().execute('insert into ridden (v) values (9)', [], 'run', tx.getTransactionContext());
    });
    expect(await rows()).toEqual([
      { v: 7, label: null },
      { v: 9, label: null },
    ]);
  });

  it('is not sent when the transaction rolls back for another reason, nor on the next transaction', async () => {
    const failed = orm.em.fork().transactional(async (tx) => {
      ride(tx, 'insert into ridden (v) values (20)');
      throw new Error('the mutation failed');
    });
    await expect(failed).rejects.toThrow('the mutation failed');

    sent = [];
    await orm.em.fork().transactional(async (tx) => {
      await tx.getConnection().execute('insert into ridden (v) values (21)', [], 'run', tx.getTransactionContext());
    });
    const messages = sent;
    sent = undefined;
    expect(messages.some((text) => text.includes('(20)'))).toBe(false);
    expect(await rows()).toEqual([{ v: 21, label: null }]);
  });

  it('cannot ride with a savepoint, which is released rather than committed', async () => {
    await orm.em.fork().transactional(async (outer) => {
      await outer.transactional(async (inner) => {
        expect(rideWithCommit(inner.getTransactionContext<Knex.Transaction>() as Knex.Transaction, 'select 1')).toBeUndefined();
      });
    });
  });

  it('carries at most one statement per transaction', async () => {
    const twice = orm.em.fork().transactional(async (tx) => {
      ride(tx, 'insert into ridden (v) values (30)');
      ride(tx, 'insert into ridden (v) values (31)');
    });
    await expect(twice).rejects.toThrow('at most one statement');
    expect(await rows()).toEqual([]);
  });
});
