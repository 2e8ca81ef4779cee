import { randomBytes } from 'node:crypto';
import { encryptedCodec, plainCodec } from '../../src/idempotency';
import { createTestDatabase, dropTestDatabase, withClient } from '../support/database';
import { associatedDataOf, legacyEnvelope } from '../support/records';
import { type GraphQLResponse, startTestServer, type TestServer } from '../support/server';

// Records written before results were compressed held their result as JSONB. The migration to
// bytes keeps them as JSON text, which the codecs still read: such records replay as before.

const BYTES_MIGRATION = 'Migration20261128030000_idempotency_result_bytes';
const CREATE_ORDER = `mutation Place($input: CreateOrderInput!) {
  createOrder(input: $input) { order { id status totalCents note lines { quantity product { sku } } } }
}`;

interface Row {
  user_id: string;
  key: string;
  fingerprint: Buffer;
  result: Buffer;
}

describe('migrating stored results from JSONB to bytes', () => {
  const encryptionKey = randomBytes(32);
  let databaseUrl: string;
  let plain: TestServer;
  let encrypted: TestServer;

  beforeAll(async () => {
    databaseUrl = await createTestDatabase();
    plain = await startTestServer({ databaseUrl, cacheSize: 0 });
    encrypted = await startTestServer({
      databaseUrl,
      seed: false,
      cacheSize: 0,
      env: { IDEMPOTENCY_ENCRYPTION_KEY: encryptionKey.toString('base64') },
    });
  });

  afterAll(async () => {
    await encrypted?.close();
    await plain?.close();
    if (databaseUrl) await dropTestDatabase(databaseUrl);
  });

  const sql = <T>(text: string, params: unknown[] = []) =>
    withClient(databaseUrl, async (client) => (await client.query(text, params)).rows as T[]);
  const columnType = async () =>
    (
      await sql<{ type: string }>(
        "select data_type as type from information_schema.columns where table_name = 'idempotency_records' and column_name = 'result'",
      )
    )[0]?.type;

  async function place(server: TestServer, token: string, key: string, input: Record<string, unknown>) {
    return server.gql<{ createOrder: { order: { id: string } } }>(CREATE_ORDER, { input }, { token, headers: { 'idempotency-key': key } });
  }

  it('keeps records written as JSON replayable, plain and encrypted, and refuses to go back while results are compressed', async () => {
    const [alice, bob] = [await plain.token('alice'), await plain.token('bob')];
    const [{ id: mug }] = await sql<{ id: string }>("select id::text from products where sku = 'MUG-001'");
    const order = { lines: [{ productId: mug, quantity: 1 }], note: 'written before compression' };
    const missing = { lines: [{ productId: '00000000-0000-4000-8000-000000000000', quantity: 1 }] };
    const first = {
      placed: await place(plain, alice, 'before-placed', order),
      failed: await place(plain, alice, 'before-failed', missing),
      encrypted: await place(encrypted, bob, 'before-encrypted', order),
    };
    expect(first.placed.body.errors).toBeUndefined();
    expect(first.failed.body.errors?.[0]?.extensions?.code).toBe('PRODUCT_NOT_FOUND');
    expect(first.encrypted.body.errors).toBeUndefined();
    const orders = await sql<{ count: number }>('select count(*)::int as count from orders');

    // While compressed results exist, the migration cannot be rolled back, and nothing changes.
    const rows = await sql<Row>('select user_id, key, fingerprint, result from idempotency_records order by key');
    expect(rows.map((row) => [row.key, row.result[0]])).toEqual([
      ['before-encrypted', 2],
      ['before-failed', 1],
      ['before-placed', 1],
    ]);
    await expect(plain.orm.getMigrator().down()).rejects.toThrow(/compressed results/);
    expect(await columnType()).toBe('bytea');

    // Rewrite the rows as the earlier version stored them, and migrate down and up again.
    for (const row of rows) {
      const json =
        row.key === 'before-encrypted'
          ? legacyEnvelope(
              JSON.stringify(encryptedCodec(encryptionKey).decode(row.result, associatedDataOf(row))),
              encryptionKey,
              associatedDataOf(row),
            )
          : JSON.stringify(plainCodec.decode(row.result, ''));
      await sql("update idempotency_records set result = convert_to($2, 'UTF8') where key = $1", [row.key, json]);
    }
    await plain.orm.getMigrator().down();
    expect(await columnType()).toBe('jsonb');
    expect(await sql("select key, result->>'kind' as kind, result ? 'alg' as envelope from idempotency_records order by key")).toEqual([
      { key: 'before-encrypted', kind: null, envelope: true },
      { key: 'before-failed', kind: 'error', envelope: false },
      { key: 'before-placed', kind: 'payload', envelope: false },
    ]);
    expect(await plain.orm.getMigrator().up()).toEqual([expect.objectContaining({ name: BYTES_MIGRATION })]);
    expect(await columnType()).toBe('bytea');
    expect(await sql("select key from idempotency_records where get_byte(result, 0) <> ascii('{')")).toEqual([]);

    const replays = {
      placed: await place(plain, alice, 'before-placed', order),
      failed: await place(plain, alice, 'before-failed', missing),
      encrypted: await place(encrypted, bob, 'before-encrypted', order),
    };
    const replayed = (response: GraphQLResponse<unknown>) =>
      (response.body.extensions?.idempotency as { replayed: boolean }[])[0]?.replayed;
    expect(replays.placed.body.data).toEqual(first.placed.body.data);
    expect(replays.failed.body.errors).toEqual(first.failed.body.errors);
    expect(replays.encrypted.body.data).toEqual(first.encrypted.body.data);
    expect([replayed(replays.placed), replayed(replays.failed), replayed(replays.encrypted)]).toEqual([true, true, true]);
    expect(await sql('select count(*)::int as count from orders')).toEqual(orders);
  });
});
