import { type EntityManager, IsolationLevel, type Knex, type MikroORM } from '@mikro-orm/postgresql';
import { Client } from 'pg';
import { openOrm } from '../../src/database/orm';
import { beginWith, rideWithCommit } from '../../src/database/transaction-riders';
import { createTestDatabase, dropTestDatabase } from '../support/database';

/**
 * Statements riding with their transaction's BEGIN or COMMIT, on a real PostgreSQL through
 * MikroORM's own transactions. One pooled connection, so every test also shows the connection
 * it leaves behind.
 */
describe('statements sent with their transaction BEGIN or COMMIT', () => {
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

  function knex(): Knex {
    return orm.em.getConnection().getKnex();
  }

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

  async function recording<T>(work: () => Promise<T>): Promise<{ value: T; messages: string[] }> {
    sent = [];
    try {
      const value = await work();
      return { value, messages: sent };
    } finally {
      sent = undefined;
    }
  }

  function insert(tx: EntityManager, v: number) {
    return tx.getConnection().execute(`insert into ridden (v) values (${v})`, [], 'run', tx.getTransactionContext());
  }

  it('begins a transaction with a statement in the BEGIN message, which MikroORM’s transaction then continues', async () => {
    await orm.em.getConnection().execute("insert into ridden (v, label) values (40, 'seen')");
    const { value, messages } = await recording(() =>
      beginWith(knex(), 'select v, label from ridden where v = 40', async (begun) => {
        const seen = begun.result.rows;
        const rider = await begun.continueIn(() =>
          orm.em.fork().transactional(async (tx) => {
            await insert(tx, 41);
            return ride(tx, 'insert into ridden (v) values (42) returning v');
          }),
        );
        return { seen, committed: rider.result?.rows };
      }),
    );

    expect(value).toEqual({ seen: [{ v: 40, label: 'seen' }], committed: [{ v: 42 }] });
    expect(messages).toEqual([
      'BEGIN;\nselect v, label from ridden where v = 40',
      'insert into ridden (v) values (41)',
      'insert into ridden (v) values (42) returning v;\nCOMMIT',
    ]);
    expect(await rows()).toEqual([40, 41, 42].map((v) => ({ v, label: v === 40 ? 'seen' : null })));
  });

  it('rolls the begun transaction back when it is not continued', async () => {
    const { value, messages } = await recording(() =>
      beginWith(knex(), 'insert into ridden (v) values (50) returning v', async (begun) => begun.result.rows),
    );

    expect(value).toEqual([{ v: 50 }]);
    expect(messages).toEqual(['BEGIN;\ninsert into ridden (v) values (50) returning v', 'ROLLBACK']);
    expect(await rows()).toEqual([]);
  });

  it('rolls back what the BEGIN message wrote when the continuing transaction fails', async () => {
    const failed = beginWith(knex(), 'insert into ridden (v) values (55)', (begun) =>
      begun.continueIn(() =>
        orm.em.fork().transactional(async (tx) => {
          await insert(tx, 56);
          throw new Error('the work failed');
        }),
      ),
    );

    await expect(failed).rejects.toThrow('the work failed');
    expect(await rows()).toEqual([]);
  });

  it('fails with the statement’s error before anything else runs, and leaves the connection clean', async () => {
    let used = false;
    const failed = beginWith(knex(), 'select v from no_such_table', async () => {
      used = true;
    });

    await expect(failed).rejects.toMatchObject({ code: '42P01' });
    expect(used).toBe(false);
    // The one pooled connection is out of the aborted transaction and serves the next one.
    await orm.em.fork().transactional((tx) => insert(tx, 61));
    expect(await rows()).toEqual([{ v: 61, label: null }]);
  });

  describe('with a second pooled connection', () => {
    let wide: MikroORM;
    beforeAll(async () => {
      wide = await openOrm({ clientUrl: databaseUrl, poolSize: 2 });
    });
    afterAll(async () => {
      await wide.close(true);
    });

    it('is continued by the first transaction begun in the scope only', async () => {
      const { messages } = await recording(() =>
        beginWith(wide.em.getConnection().getKnex(), 'insert into ridden (v) values (70)', (begun) =>
          begun.continueIn(async () => {
            await wide.em.fork().transactional((tx) => insert(tx, 71));
            await wide.em.fork().transactional((tx) => insert(tx, 72));
          }),
        ),
      );

      expect(messages.filter((text) => /^begin/i.test(text))).toEqual(['BEGIN;\ninsert into ridden (v) values (70)', 'BEGIN;']);
      expect(await rows()).toEqual([70, 71, 72].map((v) => ({ v, label: null })));
    });

    it('is not continued by a transaction with an isolation level, and rolls back', async () => {
      const { messages } = await recording(() =>
        beginWith(wide.em.getConnection().getKnex(), 'insert into ridden (v) values (80)', (begun) =>
          begun.continueIn(() => wide.em.fork().transactional((tx) => insert(tx, 81), { isolationLevel: IsolationLevel.SERIALIZABLE })),
        ),
      );

      expect(messages.some((text) => /^begin transaction isolation level serializable/i.test(text))).toBe(true);
      expect(messages.at(-1)).toBe('ROLLBACK');
      expect(await rows()).toEqual([{ v: 81, label: null }]);
    });
  });
});
