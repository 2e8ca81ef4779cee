import { randomUUID } from 'node:crypto';
import { DriverException, LockMode } from '@mikro-orm/core';
import { IsolationLevel, type MikroORM } from '@mikro-orm/postgresql';
import { Client } from 'pg';
import { Product } from '../../src/catalog/product.entity';
import { migrate, openOrm } from '../../src/database/orm';
import { seedCatalog } from '../../src/database/seed';
import { isTransientDatabaseError } from '../../src/database/transient';
import { createTestDatabase, dropTestDatabase, withClient } from '../support/database';
import { untilLockWaiters } from '../support/locks';

// The classification behind SERVICE_UNAVAILABLE (retry with the same key) versus a masked
// internal error, fed with errors a real PostgreSQL raised: as node-postgres reports them, and
// as MikroORM wraps them. A deadlock (40P01) and a serialization failure (40001) are worth a
// retry; a violated constraint or a bad statement is not.

let databaseUrl: string;
let orm: MikroORM;
/** Two products: the rows the sessions below lock. */
let rows: [string, string];

beforeAll(async () => {
  databaseUrl = await createTestDatabase();
  orm = await openOrm({ clientUrl: databaseUrl });
  await migrate(orm);
  await seedCatalog(orm.em.fork());
  rows = await withClient(
    databaseUrl,
    async (client) =>
      (await client.query<{ id: string }>('select id from products order by id limit 2')).rows.map((row) => row.id) as [string, string],
  );
});
afterAll(async () => {
  await orm?.close(true);
  if (databaseUrl) await dropTestDatabase(databaseUrl);
});

async function connect(): Promise<Client> {
  const client = new Client({ connectionString: databaseUrl });
  await client.connect();
  return client;
}

/** How a session under test locks a product row, and reads, in its transaction. */
interface Victim {
  begin(): Promise<unknown>;
  lock(id: string): Promise<unknown>;
  read(): Promise<unknown>;
  end(): Promise<unknown>;
}

/** The error that settles `work`, or undefined. */
function errorOf(work: Promise<unknown>): Promise<unknown> {
  return work.then(
    () => undefined,
    (error: unknown) => error,
  );
}

/** What `victim` raises when it locks the first row, then the second, while another session locks them the other way round. */
async function deadlock(victim: Victim): Promise<unknown> {
  const [first, second] = rows;
  const other = await connect();
  try {
    await other.query('begin');
    // The other session checks for deadlocks late, so the victim is the one that finds it.
    await other.query("set local deadlock_timeout = '10min'");
    await other.query('select id from products where id = $1 for update', [second]);
    await victim.begin();
    await victim.lock(first);
    const blocked = errorOf(victim.lock(second));
    await untilLockWaiters(other);
    const otherLocked = other.query('select id from products where id = $1 for update', [first]);
    const error = await blocked;
    await victim.end();
    await otherLocked;
    await other.query('rollback');
    return error;
  } finally {
    await other.end();
  }
}

/** What `victim`, in a repeatable-read transaction, raises when it locks a row updated after its snapshot. */
async function serializationFailure(victim: Victim): Promise<unknown> {
  const [first] = rows;
  const other = await connect();
  try {
    await other.query('begin');
    await other.query('select id from products where id = $1 for update', [first]);
    await victim.begin();
    await victim.read();
    const blocked = errorOf(victim.lock(first));
    await untilLockWaiters(other);
    await other.query('update products set stock = stock where id = $1', [first]);
    await other.query('commit');
    const error = await blocked;
    await victim.end();
    return error;
  } finally {
    await other.end();
  }
}

describe('errors node-postgres reports', () => {
  let client: Client;
  beforeEach(async () => {
    client = await connect();
  });
  afterEach(async () => {
    await client.end();
  });
  const victim = (begin: string): Victim => ({
    begin: () => client.query(begin),
    lock: (id) => client.query('select id from products where id = $1 for update', [id]),
    read: () => client.query('select count(*) from products'),
    end: () => client.query('rollback'),
  });

  it('counts a detected deadlock (40P01) as transient', async () => {
    const error = await deadlock(victim('begin'));
    expect(error).toMatchObject({ code: '40P01' });
    expect(isTransientDatabaseError(error)).toBe(true);
  });

  it('counts a serialization failure (40001) as transient', async () => {
    const error = await serializationFailure(victim('begin isolation level repeatable read'));
    expect(error).toMatchObject({ code: '40001' });
    expect(isTransientDatabaseError(error)).toBe(true);
  });

  it.each([
    ['a unique violation (23505)', 'update products set sku = (select min(sku) from products)', '23505'],
    ['a not-null violation (23502)', 'update products set stock = null', '23502'],
    ['a malformed value (22P02)', "select * from products where id = 'x'", '22P02'],
    ['a missing table (42P01)', 'select * from no_such_table', '42P01'],
    ['a syntax error (42601)', 'selec 1', '42601'],
  ])('does not count %s as transient', async (_case, sql, code) => {
    const error = await errorOf(client.query(sql));
    expect(error).toMatchObject({ code });
    expect(isTransientDatabaseError(error)).toBe(false);
  });
});

describe('errors MikroORM raises, locking products as the order service does', () => {
  /** Runs `work` with a victim in a transaction of the ORM; returns what the transaction threw. */
  function inTransaction(work: (victim: Victim) => Promise<unknown>, isolationLevel?: IsolationLevel): Promise<unknown> {
    return errorOf(
      orm.em.fork().transactional(
        async (em) => {
          const none = async () => {};
          throw await work({
            begin: none,
            lock: (id) => em.find(Product, { id }, { lockMode: LockMode.PESSIMISTIC_WRITE, refresh: true }),
            read: () => em.count(Product, {}),
            end: none,
          });
        },
        { isolationLevel },
      ),
    );
  }

  it('counts a detected deadlock as transient', async () => {
    const thrown = await inTransaction(deadlock);
    expect(thrown).toBeInstanceOf(DriverException);
    expect(isTransientDatabaseError(thrown)).toBe(true);
  });

  it('counts a serialization failure as transient', async () => {
    const thrown = await inTransaction(serializationFailure, IsolationLevel.REPEATABLE_READ);
    expect(thrown).toBeInstanceOf(DriverException);
    expect(isTransientDatabaseError(thrown)).toBe(true);
  });

  it('does not count a unique violation as transient', async () => {
    const thrown = await errorOf(
      orm.em.fork().transactional(async (em) => {
        const [existing] = await em.find(Product, {}, { limit: 1 });
        em.create(Product, { ...existing!, id: randomUUID() });
      }),
    );
    expect(thrown).toBeInstanceOf(DriverException);
    expect(isTransientDatabaseError(thrown)).toBe(false);
  });

  it('does not count an error of the application as transient', () => {
    expect(isTransientDatabaseError(new Error('Insufficient stock'))).toBe(false);
    expect(isTransientDatabaseError(undefined)).toBe(false);
  });
});
