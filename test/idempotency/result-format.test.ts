import { randomBytes } from 'node:crypto';
import { encryptedCodec, plainCodec } from '../../src/idempotency';
import { createTestDatabase, dropTestDatabase, withClient } from '../support/database';
import { associatedDataOf, deflatedResult, encryptedDeflatedResult, legacyEnvelope } from '../support/records';
import { type GraphQLResponse, startTestServer, type TestServer } from '../support/server';

// Records written before results were compressed held their result as JSONB. The migration to
// bytes keeps them as JSON text, which the codecs still read: such records replay as before.
// So do records whose result an earlier version deflated instead of compressing it with Snappy.

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

  /**
   * Places an order and a failing one (plain), and an order on the encrypted server, under the
   * keys `<prefix>-placed`, `<prefix>-failed` and `<prefix>-encrypted`. Returns a check that
   * sends all three again and expects each to replay its first answer, adding no order.
   */
  async function placeThree(prefix: string, note: string): Promise<() => Promise<void>> {
    const [alice, bob] = [await plain.token('alice'), await plain.token('bob')];
    const [{ id: mug }] = await sql<{ id: string }>("select id::text from products where sku = 'MUG-001'");
    const order = { lines: [{ productId: mug, quantity: 1 }], note };
    const missing = { lines: [{ productId: '00000000-0000-4000-8000-000000000000', quantity: 1 }] };
    const placeAll = async () => ({
      placed: await place(plain, alice, `${prefix}-placed`, order),
      failed: await place(plain, alice, `${prefix}-failed`, missing),
      encrypted: await place(encrypted, bob, `${prefix}-encrypted`, order),
    });
    const first = await placeAll();
    expect(first.placed.body.errors).toBeUndefined();
    expect(first.failed.body.errors?.[0]?.extensions?.code).toBe('PRODUCT_NOT_FOUND');
    expect(first.encrypted.body.errors).toBeUndefined();
    const orders = await sql<{ count: number }>('select count(*)::int as count from orders');

    return async () => {
      const replays = await placeAll();
      const replayed = (response: GraphQLResponse<unknown>) =>
        (response.body.extensions?.idempotency as { replayed: boolean }[])[0]?.replayed;
      expect(replays.placed.body.data).toEqual(first.placed.body.data);
      expect(replays.failed.body.errors).toEqual(first.failed.body.errors);
      expect(replays.encrypted.body.data).toEqual(first.encrypted.body.data);
      expect([replayed(replays.placed), replayed(replays.failed), replayed(replays.encrypted)]).toEqual([true, true, true]);
      expect(await sql('select count(*)::int as count from orders')).toEqual(orders);
    };
  }

  /** Rewrites each row's result: its JSON, written as `plainAs` or, for the encrypted row, `encryptedAs` writes it. */
  async function rewriteResults(
    rows: readonly Row[],
    plainAs: (json: string) => Buffer,
    encryptedAs: (json: string, associatedData: string) => Buffer,
  ): Promise<void> {
    for (const row of rows) {
      const result = row.key.endsWith('-encrypted')
        ? encryptedAs(JSON.stringify(encryptedCodec(encryptionKey).decode(row.result, associatedDataOf(row))), associatedDataOf(row))
        : plainAs(JSON.stringify(plainCodec.decode(row.result, '')));
      await sql('update idempotency_records set result = $2 where key = $1', [row.key, result]);
    }
  }

  it('keeps records written as JSON replayable, plain and encrypted, and refuses to go back while results are compressed', async () => {
    const expectReplays = await placeThree('before', 'written before compression');

    // While compressed results exist, the migration cannot be rolled back, and nothing changes.
    const rows = await sql<Row>('select user_id, key, fingerprint, result from idempotency_records order by key');
    expect(rows.map((row) => [row.key, row.result[0]])).toEqual([
      ['before-encrypted', 4],
      ['before-failed', 3],
      ['before-placed', 3],
    ]);
    await expect(plain.orm.getMigrator().down({ migrations: [BYTES_MIGRATION] })).rejects.toThrow(/compressed results/);
    expect(await columnType()).toBe('bytea');

    // Rewrite the rows as the earlier version stored them, and migrate down and up again.
    await rewriteResults(
      rows,
      (json) => Buffer.from(json),
      (json, associatedData) => Buffer.from(legacyEnvelope(json, encryptionKey, associatedData)),
    );
    await plain.orm.getMigrator().down({ migrations: [BYTES_MIGRATION] });
    expect(await columnType()).toBe('jsonb');
    expect(await sql("select key, result->>'kind' as kind, result ? 'alg' as envelope from idempotency_records order by key")).toEqual([
      { key: 'before-encrypted', kind: null, envelope: true },
      { key: 'before-failed', kind: 'error', envelope: false },
      { key: 'before-placed', kind: 'payload', envelope: false },
    ]);
    expect(await plain.orm.getMigrator().up()).toEqual([expect.objectContaining({ name: BYTES_MIGRATION })]);
    expect(await columnType()).toBe('bytea');
    expect(await sql("select key from idempotency_records where get_byte(result, 0) <> ascii('{')")).toEqual([]);

    await expectReplays();
  });

  it('replays records deflated by the version before Snappy, plain and encrypted', async () => {
    const expectReplays = await placeThree('deflated', 'deflated before Snappy');

    const rows = await sql<Row>("select user_id, key, fingerprint, result from idempotency_records where key like 'deflated-%'");
    expect(rows).toHaveLength(3);
    await rewriteResults(rows, deflatedResult, (json, associatedData) => encryptedDeflatedResult(json, encryptionKey, associatedData));
    expect(
      await sql("select key, get_byte(result, 0) as format from idempotency_records where key like 'deflated-%' order by key"),
    ).toEqual([
      { key: 'deflated-encrypted', format: 2 },
      { key: 'deflated-failed', format: 1 },
      { key: 'deflated-placed', format: 1 },
    ]);

    await expectReplays();
  });
});
