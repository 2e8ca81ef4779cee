import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ResultCodec } from '../../../src/idempotency/codec';
import { plainResult } from '../../support/records';
import { startTestServer, type TestServer } from '../../support/server';
import {
  CANCEL_ORDER,
  type Cancelled,
  CREATE_ORDER,
  CREATE_PRODUCT,
  type CreatedProduct,
  codesOf,
  markersOf,
  newKey,
  type OrderInput,
  type Placed,
  useRulesServers,
} from './support';

// Rules I12 and I13 of docs/idempotency.md (#i12-generic-engine, #i13-storage),
// observed over HTTP against the real server and database.

describe('idempotency rules', () => {
  const ctx = useRulesServers({ uncached: true });
  const { sql, productId, newProduct, stockOf, countOrders, snapshot, rowsOf, send, placed, mug } = ctx;

  describe('I12: every state-changing mutation opts in to the generic engine', () => {
    it('replays cancelOrder without returning stock twice, and refuses its key for another order', async () => {
      const product = await newProduct(20);
      const order = (await placed({ lines: [{ productId: product, quantity: 5 }] }, newKey())).body.data!.createOrder.order;
      const other = (await placed({ lines: [{ productId: product, quantity: 1 }] }, newKey())).body.data!.createOrder.order;
      const key = newKey();
      const cancel = (orderId: string, target: TestServer = ctx.server) =>
        send<Cancelled>(CANCEL_ORDER, { input: { orderId }, key }, { token: ctx.alice, on: target });

      const first = await cancel(order.id);
      expect(first.body.errors).toBeUndefined();
      expect(first.body.data!.cancelOrder.order.status).toBe('CANCELLED');
      expect(await stockOf(product)).toBe(19);
      const before = await snapshot();

      const replays = [await cancel(order.id), await cancel(order.id, ctx.uncached)];
      const reused = await cancel(other.id);

      for (const replay of replays) {
        expect(replay.body.data).toEqual(first.body.data);
        expect(markersOf(replay)).toEqual([expect.objectContaining({ path: ['cancelOrder'], key, replayed: true })]);
      }
      expect(codesOf(reused)).toEqual(['IDEMPOTENCY_KEY_REUSED']);
      expect(await snapshot()).toEqual(before);
      expect(await sql('select status from orders where id = $1', [other.id])).toEqual([{ status: 'PLACED' }]);
      expect((await rowsOf(key))[0]!.operation).toBe('cancelOrder');
    });

    it('replays createProduct and refuses its key for another product', async () => {
      const key = newKey();
      const input = {
        sku: `RULES-IDEM-${randomBytes(4).toString('hex')}`,
        name: 'Idempotent product',
        priceCents: 700,
        currency: 'USD',
        stock: 9,
      };
      const create = (fields: typeof input, target: TestServer = ctx.server) =>
        send<CreatedProduct>(CREATE_PRODUCT, { input: fields, key }, { token: ctx.admin, on: target });

      const first = await create(input);
      expect(first.body.errors).toBeUndefined();
      const before = await snapshot();

      const replays = [await create(input), await create(input, ctx.uncached)];
      const reused = await create({ ...input, name: 'Another name' });

      for (const replay of replays) {
        expect(replay.body.data).toEqual(first.body.data);
        expect(markersOf(replay)).toEqual([expect.objectContaining({ path: ['createProduct'], key, replayed: true })]);
      }
      expect(codesOf(reused)).toEqual(['IDEMPOTENCY_KEY_REUSED']);
      expect(await snapshot()).toEqual(before);
      expect(await sql('select count(*)::int as count from products where sku = $1', [input.sku])).toEqual([{ count: 1 }]);
    });

    /** Every relative import of every .ts file under `folder`, resolved: [file, target]. */
    function importsUnder(folder: string): [string, string][] {
      const files = readdirSync(folder, { recursive: true, encoding: 'utf8' }).filter((file) => file.endsWith('.ts'));
      return files.flatMap((file) => {
        const source = readFileSync(path.join(folder, file), 'utf8');
        const specifiers = [...source.matchAll(/(?:from\s+|import\s*\(\s*|require\s*\(\s*|import\s+)['"]([^'"]+)['"]/g)].map(
          (match) => match[1]!,
        );
        return specifiers
          .filter((specifier) => specifier.startsWith('.'))
          .map((specifier): [string, string] => [path.join(folder, file), path.resolve(folder, path.dirname(file), specifier)]);
      });
    }

    it('keeps the engine self-contained: it imports nothing from the application', () => {
      const engine = path.resolve(__dirname, '../../../src/idempotency');
      const imports = importsUnder(engine);
      expect(imports.length).toBeGreaterThan(5);
      expect(imports.filter(([, target]) => !target.startsWith(`${engine}${path.sep}`))).toEqual([]);
    });

    it('lets the rest of src/ reach the engine only through its index', () => {
      const root = path.resolve(__dirname, '../../../src');
      const engine = path.join(root, 'idempotency');
      const internals = importsUnder(root).filter(
        ([file, target]) => !file.startsWith(`${engine}${path.sep}`) && target.startsWith(`${engine}${path.sep}`),
      );
      expect(internals).toEqual([]);
    });
  });

  describe('I13: storage', () => {
    it('stores a 32-byte fingerprint that is the SHA-256 of the canonical arguments, not the input', async () => {
      const key = newKey();
      const note = 'ring the bell twice';
      const mugId = productId('MUG-001');

      await placed({ lines: [{ productId: mugId, quantity: 1 }], note }, key);

      const [row] = await sql<{ fingerprint: Buffer; length: number }>(
        'select fingerprint, octet_length(fingerprint) as length from idempotency_records where key = $1',
        [key],
      );
      expect(row!.length).toBe(32);
      const canonical = `{"arguments":{"input":{"lines":[{"productId":"${mugId}","quantity":1}],"note":"${note}"}},"operation":"createOrder"}`;
      expect(row!.fingerprint.equals(createHash('sha256').update(canonical).digest())).toBe(true);
      for (const encoding of ['utf8', 'latin1', 'hex', 'base64'] as const) {
        const text = row!.fingerprint.toString(encoding);
        expect(text).not.toContain(note);
        expect(text).not.toContain(mugId);
        expect(text).not.toContain(key);
      }
    });

    it('stores the whole payload as JSON text, record format 1, when no encryption key is set', async () => {
      const key = newKey();
      const order = (await placed(mug(), key)).body.data!.createOrder.order;

      const [row] = await sql<{ result: Buffer; format: number; key_id: string | null }>(
        'select result, format, key_id from idempotency_records where key = $1',
        [key],
      );
      expect(row).toMatchObject({ format: 1, key_id: null });
      expect(JSON.parse(row!.result.toString('utf8'))).toEqual({
        kind: 'payload',
        payload: { order: expect.objectContaining({ id: order.id }) },
      });
    });

    it('stores and replays text with quotes, backslashes and dollar signs exactly, for a user whose id has them too', async () => {
      // Values travel as parameters: none of these may end a statement or change its meaning.
      const user = `o'neil\\ $$ $q$ "x" 🦆 ${randomBytes(3).toString('hex')}`;
      const token = await ctx.server.token(user);
      const note = `it's \\'; drop table orders; -- $$ $1 \\x00 \\\\ "quoted" ünïcödé 🦆`;
      const key = newKey();
      const input = { ...mug(), note };

      const first = await placed(input, key, { token });
      const replays = [await placed(input, key, { token }), await placed(input, key, { token, on: ctx.uncached })];

      expect(first.body.data!.createOrder.order.note).toBe(note);
      for (const replay of replays) expect(replay.body.data).toEqual(first.body.data);
      expect(markersOf(replays[1]!)).toEqual([expect.objectContaining({ replayed: true })]);
      const rows = await sql<{ user_id: string; result: Buffer }>('select user_id, result from idempotency_records where key = $1', [key]);
      expect(rows.map((row) => ({ user: row.user_id, stored: plainResult(row.result) }))).toEqual([
        { user, stored: { kind: 'payload', payload: { order: expect.objectContaining({ note }) } } },
      ]);
      expect(await sql('select count(*)::int as count from orders where note = $1', [note])).toEqual([{ count: 1 }]);
    });

    describe('with IDEMPOTENCY_ENCRYPTION_KEY', () => {
      const encryptionKey = randomBytes(32);
      let encrypted: TestServer;
      let token: string;
      let mugId: string;

      beforeAll(async () => {
        encrypted = await startTestServer({ env: { IDEMPOTENCY_ENCRYPTION_KEY: encryptionKey.toString('base64') }, cacheSize: 0 });
        token = await encrypted.token('alice');
        [{ id: mugId }] = (await sql<{ id: string }>("select id::text from products where sku = 'MUG-001'", [], encrypted)) as [
          { id: string },
        ];
      });

      afterAll(async () => {
        await encrypted?.close();
      });

      function placeEncrypted(input: OrderInput, key: string) {
        return send<Placed>(CREATE_ORDER, { input, key }, { token, on: encrypted });
      }

      async function stored(key: string) {
        const [row] = await sql<{ user_id: string; fingerprint: Buffer; result: Buffer; format: number; key_id: string }>(
          'select user_id, fingerprint, result, format, key_id from idempotency_records where key = $1',
          [key],
          encrypted,
        );
        const binding = `${row!.user_id}\u0000${key}\u0000${row!.fingerprint.toString('hex')}`;
        return {
          result: row!.result,
          format: row!.format,
          encoded: { format: row!.format, keyId: row!.key_id, result: row!.result },
          binding,
        };
      }

      it('keeps no plaintext of a payload or a failure at rest, and still replays both', async () => {
        const [okKey, failedKey] = [newKey(), newKey()];
        const missing = randomUUID();
        const note = 'deliver to the back door';
        const first = await placeEncrypted({ lines: [{ productId: mugId, quantity: 1 }], note }, okKey);
        const failure = await placeEncrypted({ lines: [{ productId: missing, quantity: 1 }] }, failedKey);
        expect(first.body.errors).toBeUndefined();
        expect(codesOf(failure)).toEqual(['PRODUCT_NOT_FOUND']);
        const orderId = first.body.data!.createOrder.order.id;
        const ordersBefore = await countOrders(encrypted);

        const [ok, failed] = [await stored(okKey), await stored(failedKey)];
        for (const encoding of ['utf8', 'latin1'] as const) {
          const [okText, failedText] = [ok.result.toString(encoding), failed.result.toString(encoding)];
          for (const secret of [orderId, mugId, note, 'PLACED', 'payload', 'MUG-001']) expect(okText).not.toContain(secret);
          for (const secret of [missing, 'PRODUCT_NOT_FOUND', 'Product not found']) expect(failedText).not.toContain(secret);
        }
        expect([ok.format, failed.format]).toEqual([2, 2]);
        // What is stored is the outcome, encrypted with the key and bound to the user, key and fingerprint.
        const codec = new ResultCodec(encryptionKey);
        expect(codec.decode(ok.encoded, ok.binding)).toEqual({
          kind: 'payload',
          payload: { order: expect.objectContaining({ id: orderId, note }) },
        });
        expect(codec.decode(failed.encoded, failed.binding)).toEqual(expect.objectContaining({ kind: 'error', code: 'PRODUCT_NOT_FOUND' }));

        const replay = await placeEncrypted({ lines: [{ productId: mugId, quantity: 1 }], note }, okKey);
        const failureReplay = await placeEncrypted({ lines: [{ productId: missing, quantity: 1 }] }, failedKey);
        expect(replay.body.data).toEqual(first.body.data);
        expect(markersOf(replay)).toEqual([expect.objectContaining({ replayed: true })]);
        expect(failureReplay.body.errors).toEqual(failure.body.errors);
        expect(await countOrders(encrypted)).toBe(ordersBefore);
      });

      it('fails the replay of a tampered record with IDEMPOTENCY_RECORD_UNREADABLE instead of returning other data', async () => {
        const key = newKey();
        const first = await placeEncrypted({ lines: [{ productId: mugId, quantity: 1 }] }, key);
        const orderId = first.body.data!.createOrder.order.id;
        // One bit of the ciphertext (after the IV and tag) flipped in place.
        const [row] = await sql<{ changed: boolean }>(
          `update idempotency_records
              set result = set_byte(result, length(result) - 8, get_byte(result, length(result) - 8) # 32)
            where key = $1
           returning length(result) > 29 as changed`,
          [key],
          encrypted,
        );
        expect(row).toEqual({ changed: true });
        const before = await snapshot(encrypted);

        const replay = await placeEncrypted({ lines: [{ productId: mugId, quantity: 1 }] }, key);

        expect(codesOf(replay)).toEqual(['IDEMPOTENCY_RECORD_UNREADABLE']);
        expect(replay.body.data ?? null).toBeNull();
        expect(JSON.stringify(replay.body)).not.toContain(orderId);
        expect(await snapshot(encrypted)).toEqual(before);
      });

      it('fails the replay of a record copied onto another key instead of replaying it', async () => {
        const [source, target] = [newKey(), newKey()];
        const input = { lines: [{ productId: mugId, quantity: 1 }] };
        const sourceOrder = (await placeEncrypted(input, source)).body.data!.createOrder.order.id;
        const targetOrder = (await placeEncrypted(input, target)).body.data!.createOrder.order.id;
        await sql(
          `update idempotency_records t set result = s.result from idempotency_records s
            where t.key = $2 and s.key = $1 and s.user_id = t.user_id`,
          [source, target],
          encrypted,
        );
        const before = await snapshot(encrypted);

        const replay = await placeEncrypted(input, target);

        expect(codesOf(replay)).toEqual(['IDEMPOTENCY_RECORD_UNREADABLE']);
        expect(JSON.stringify(replay.body)).not.toContain(sourceOrder);
        expect(JSON.stringify(replay.body)).not.toContain(targetOrder);
        expect(await snapshot(encrypted)).toEqual(before);
      });
    });
  });
});
