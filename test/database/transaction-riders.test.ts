import { type EntityManager, IsolationLevel, type Knex, type MikroORM } from '@mikro-orm/postgresql';
import { Client } from 'pg';
import { openOrm } from '../../src/database/orm';
import { rideWithBegin, rideWithCommit } from '../../src/database/transaction-riders';
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

  it('sends a statement and BEGIN as one message, its result at hand when the transaction has begun', async () => {
    await orm.em.getConnection().execute("insert into ridden (v, label) values (40, 'seen')");
    const { value, messages } = await recording(() =>
      rideWithBegin('select v, label from ridden where v = 40', (rider) =>
        orm.em.fork().transactional(async (tx) => {
          const seen = rider.result?.rows;
          await insert(tx, 41);
          return seen;
        }),
      ),
    );

    expect(value).toEqual([{ v: 40, label: 'seen' }]);
    expect(messages[0]).toBe('BEGIN;\nselect v, label from ridden where v = 40');
    expect(messages.filter((text) => /^begin/i.test(text))).toEqual([messages[0]]);
    expect(messages.at(-1)).toMatch(/^commit/i);
    expect(await rows()).toEqual([
      { v: 40, label: 'seen' },
      { v: 41, label: null },
    ]);
  });

  it('rides with the BEGIN and the COMMIT of the same transaction', async () => {
    const { value: riders, messages } = await recording(() =>
      rideWithBegin('select count(*)::int as n from ridden', async (begin) => {
        const commit = await orm.em.fork().transactional(async (tx) => ride(tx, 'insert into ridden (v) values (50) returning v'));
        return { begin, commit };
      }),
    );

    expect(messages).toEqual(['BEGIN;\nselect count(*)::int as n from ridden', 'insert into ridden (v) values (50) returning v;\nCOMMIT']);
    expect(riders.begin.result?.rows).toEqual([{ n: 0 }]);
    expect(riders.commit.result?.rows).toEqual([{ v: 50 }]);
  });

  it('fails the transaction with the statement’s error before its work runs, and leaves the connection clean', async () => {
    let ran = false;
    const failed = rideWithBegin('select v from no_such_table', () =>
      orm.em.fork().transactional(async (tx) => {
        ran = true;
        await insert(tx, 60);
      }),
    );

    await expect(failed).rejects.toMatchObject({ code: '42P01' });
    expect(ran).toBe(false);
    // The one pooled connection is out of the aborted transaction and serves the next one.
    await orm.em.fork().transactional((tx) => insert(tx, 61));
    expect(await rows()).toEqual([{ v: 61, label: null }]);
  });

  it('is offered to the first transaction begun in its scope only', async () => {
    const { value, messages } = await recording(() =>
      rideWithBegin('select 1 as one', async (rider) => {
        await orm.em.fork().transactional((tx) => insert(tx, 70));
        const first = rider.result?.rows;
        await orm.em.fork().transactional((tx) => insert(tx, 71));
        return { first, after: rider.result?.rows };
      }),
    );
    await orm.em.fork().transactional((tx) => insert(tx, 72));

    expect(value).toEqual({ first: [{ one: 1 }], after: [{ one: 1 }] });
    expect(messages.filter((text) => text.includes('select 1 as one'))).toHaveLength(1);
    expect(await rows()).toEqual([70, 71, 72].map((v) => ({ v, label: null })));
  });

  it('is not carried by a savepoint, which claims it all the same', async () => {
    await orm.em.fork().transactional(async (outer) => {
      const { value: result, messages } = await recording(() =>
        rideWithBegin('select 2 as two', async (rider) => {
          await outer.transactional((inner) => insert(inner, 80));
          await outer.transactional((inner) => insert(inner, 81));
          return rider.result;
        }),
      );
      expect(result).toBeUndefined();
      expect(messages.some((text) => text.includes('select 2 as two'))).toBe(false);
    });
    expect(await rows()).toEqual([80, 81].map((v) => ({ v, label: null })));
  });

  it('leaves a transaction with an isolation level to knex’s own BEGIN', async () => {
    const { value: result, messages } = await recording(() =>
      rideWithBegin('select 3 as three', (rider) =>
        orm.em
          .fork()
          .transactional((tx) => insert(tx, 90), { isolationLevel: IsolationLevel.SERIALIZABLE })
          .then(() => rider.result),
      ),
    );

    expect(result).toBeUndefined();
    expect(messages.some((text) => text.includes('select 3 as three'))).toBe(false);
    expect(messages.some((text) => /^begin transaction isolation level serializable/i.test(text))).toBe(true);
  });
});
