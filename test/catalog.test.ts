import { randomUUID } from 'node:crypto';
import { withClient } from './support/database';
import { codesOf } from './support/responses';
import { type GraphQLResponse, startTestServer, type TestServer } from './support/server';

interface ProductNode {
  id: string;
  sku: string;
  name: string;
  priceCents: number;
  currency: string;
  stock: number;
}

interface ProductsData {
  products: {
    edges: { cursor: string; node: ProductNode }[];
    pageInfo: { hasNextPage: boolean; endCursor: string | null };
  };
}

const PRODUCT_FIELDS = 'id sku name priceCents currency stock';
const PRODUCTS = `query($first: Int, $after: String) {
  products(first: $first, after: $after) {
    edges { cursor node { ${PRODUCT_FIELDS} } }
    pageInfo { hasNextPage endCursor }
  }
}`;
const PRODUCT = `query($id: ID!) { product(id: $id) { ${PRODUCT_FIELDS} } }`;
const CREATE_PRODUCT = `mutation($input: CreateProductInput!) {
  createProduct(input: $input) { product { ${PRODUCT_FIELDS} } }
}`;

const DEMO_SKUS = [
  'BAG-001',
  'BTL-001',
  'CAP-001',
  'HOOD-001',
  'KEY-001',
  'MUG-001',
  'NB-001',
  'PEN-001',
  'PIN-001',
  'POS-001',
  'SOCK-001',
  'STK-001',
  'TEE-001',
  'UMB-001',
];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('catalog', () => {
  let server: TestServer;
  let adminToken: string;

  function products(first?: number, after?: string | null): Promise<GraphQLResponse<ProductsData>> {
    return server.gql<ProductsData>(PRODUCTS, { first, after });
  }

  function createProduct(input: Record<string, unknown>): Promise<GraphQLResponse<{ createProduct: { product: ProductNode } }>> {
    return server.gql(CREATE_PRODUCT, { input }, { token: adminToken, headers: { 'idempotency-key': randomUUID() } });
  }

  function query<T extends object>(sql: string, values: unknown[] = []): Promise<T[]> {
    return withClient(server.databaseUrl, async (client) => (await client.query<T>(sql, values)).rows);
  }

  async function productCount(): Promise<number> {
    const [row] = await query<{ count: string }>('SELECT count(*) FROM products');
    return Number(row?.count);
  }

  async function seededProduct(sku: string): Promise<ProductNode> {
    const [row] = await query<ProductNode>(
      'SELECT id, sku, name, price_cents AS "priceCents", currency, stock FROM products WHERE sku = $1',
      [sku],
    );
    if (!row) throw new Error(`no product ${sku}`);
    return row;
  }

  /** Follows endCursor until hasNextPage is false; returns every page. */
  async function walk(first: number): Promise<ProductsData['products'][]> {
    const pages: ProductsData['products'][] = [];
    let after: string | null = null;
    for (;;) {
      const response = await products(first, after);
      expect(response.body.errors).toBeUndefined();
      const page = response.body.data!.products;
      pages.push(page);
      if (!page.pageInfo.hasNextPage) return pages;
      if (pages.length > 50) throw new Error('pagination does not end');
      after = page.pageInfo.endCursor;
      expect(after).toEqual(expect.any(String));
    }
  }

  beforeAll(async () => {
    server = await startTestServer();
    adminToken = await server.token('catalog-admin', { admin: true });
  });
  afterAll(async () => {
    await server.close();
  });

  describe('products', () => {
    it('lists the seeded demo catalog of 14 USD products sorted by sku', async () => {
      const response = await products();
      expect(response.body.errors).toBeUndefined();
      const page = response.body.data!.products;
      expect(page.edges.map((edge) => edge.node.sku)).toEqual(DEMO_SKUS);
      expect(page.pageInfo.hasNextPage).toBe(false);
      for (const { node } of page.edges) {
        expect(node.id).toMatch(UUID);
        expect(node.currency).toBe('USD');
        expect(node.stock).toBeGreaterThanOrEqual(100);
        expect(node.priceCents).toBeGreaterThan(0);
      }
    });

    it.each([1, 3, 5, 13])('walks the whole catalog with first=%i, without duplicates or gaps', async (first) => {
      const pages = await walk(first);
      expect(pages).toHaveLength(Math.ceil(DEMO_SKUS.length / first));
      const skus = pages.flatMap((page) => page.edges.map((edge) => edge.node.sku));
      expect(skus).toEqual(DEMO_SKUS);
      const cursors = pages.flatMap((page) => page.edges.map((edge) => edge.cursor));
      expect(new Set(cursors).size).toBe(cursors.length);
      for (const page of pages) {
        expect(page.edges.length).toBeLessThanOrEqual(first);
        expect(page.pageInfo.endCursor).toBe(page.edges.at(-1)?.cursor);
      }
      expect(pages.slice(0, -1).every((page) => page.pageInfo.hasNextPage && page.edges.length === first)).toBe(true);
      expect(pages.at(-1)?.pageInfo.hasNextPage).toBe(false);
    });

    it('reports no next page when the page ends exactly at the last product', async () => {
      const response = await products(DEMO_SKUS.length);
      expect(response.body.data?.products.edges).toHaveLength(DEMO_SKUS.length);
      expect(response.body.data?.products.pageInfo.hasNextPage).toBe(false);
    });

    it('continues after any edge cursor, not only endCursor', async () => {
      const first = (await products(20)).body.data!.products;
      const third = first.edges[2]!;
      const rest = (await products(20, third.cursor)).body.data!.products;
      expect(rest.edges.map((edge) => edge.node.sku)).toEqual(DEMO_SKUS.slice(3));
    });

    it('returns an empty page for first=0', async () => {
      const response = await products(0);
      expect(response.body.errors).toBeUndefined();
      expect(response.body.data?.products.edges).toEqual([]);
    });

    it.each([-1, -100])('rejects first=%i as BAD_USER_INPUT', async (first) => {
      const response = await products(first);
      expect(codesOf(response)).toEqual(['BAD_USER_INPUT']);
    });

    it.each([
      ['plain text', 'garbage'],
      ['base64 of something else', Buffer.from('hello world').toString('base64url')],
      ['a cursor of another kind', Buffer.from(JSON.stringify(['order', '2026-01-01T00:00:00.000Z', randomUUID()])).toString('base64url')],
      ['a cursor with a non-string value', Buffer.from(JSON.stringify(['product', 5])).toString('base64url')],
      ['a cursor with too many values', Buffer.from(JSON.stringify(['product', 'MUG-001', 'extra'])).toString('base64url')],
    ])('rejects %s as the after cursor with BAD_USER_INPUT', async (_case, after) => {
      const response = await products(5, after);
      expect(codesOf(response)).toEqual(['BAD_USER_INPUT']);
      expect(response.body.data ?? null).toBeNull();
    });
  });

  describe('product(id)', () => {
    it('returns a product by id', async () => {
      const mug = await seededProduct('MUG-001');
      const response = await server.gql(PRODUCT, { id: mug.id });
      expect(response.body).toEqual({ data: { product: mug } });
    });

    it('finds a product by its id written in upper case', async () => {
      const mug = await seededProduct('MUG-001');
      const response = await server.gql<{ product: ProductNode | null }>(PRODUCT, { id: mug.id.toUpperCase() });
      expect(response.body.data?.product?.sku).toBe('MUG-001');
    });

    it('returns null for an unknown uuid', async () => {
      const response = await server.gql(PRODUCT, { id: randomUUID() });
      expect(response.body).toEqual({ data: { product: null } });
    });

    it.each(['not-a-uuid', '', '12345', `${randomUUID()}x`, "' OR 1=1 --"])('rejects the malformed id %j as BAD_USER_INPUT', async (id) => {
      const response = await server.gql(PRODUCT, { id });
      expect(codesOf(response)).toEqual(['BAD_USER_INPUT']);
      expect(response.body.data).toEqual({ product: null });
    });
  });

  describe('createProduct', () => {
    const valid = { sku: 'LAMP-001', name: 'Desk lamp', priceCents: 3900, currency: 'EUR', stock: 25 };

    it('creates a product that can then be read back', async () => {
      const before = await productCount();
      const response = await createProduct(valid);
      expect(response.body.errors).toBeUndefined();
      const created = response.body.data!.createProduct.product;
      expect(created).toEqual({ id: expect.stringMatching(UUID), ...valid });

      expect(await productCount()).toBe(before + 1);
      expect(await seededProduct('LAMP-001')).toEqual(created);
      expect((await server.gql(PRODUCT, { id: created.id })).body).toEqual({ data: { product: created } });
      const listed = (await products(100)).body.data!.products.edges.map((edge) => edge.node);
      expect(listed).toContainEqual(created);
    });

    it('accepts the boundary values: price 0 and 10000000, stock 0', async () => {
      const free = await createProduct({ ...valid, sku: 'FREE-001', priceCents: 0, stock: 0 });
      expect(free.body.errors).toBeUndefined();
      expect(free.body.data?.createProduct.product).toMatchObject({ priceCents: 0, stock: 0 });

      const dear = await createProduct({ ...valid, sku: 'DEAR-001', priceCents: 10_000_000 });
      expect(dear.body.errors).toBeUndefined();
      expect(dear.body.data?.createProduct.product.priceCents).toBe(10_000_000);
    });

    it.each(['MUG-001', 'LAMP-001'])('refuses the duplicate SKU %s with SKU_TAKEN and writes nothing', async (sku) => {
      const original = await seededProduct(sku);
      const before = await productCount();
      const response = await createProduct({ sku, name: 'Impostor', priceCents: 1, currency: 'USD', stock: 1 });
      expect(codesOf(response)).toEqual(['SKU_TAKEN']);
      expect(response.body.data ?? null).toBeNull();
      expect(await productCount()).toBe(before);
      expect(await seededProduct(sku)).toEqual(original);
    });

    it.each([
      ['an empty sku', { sku: '' }],
      ['a sku with a space', { sku: 'BAD SKU' }],
      ['a sku starting with a dash', { sku: '-SKU' }],
      ['a sku longer than 64 characters', { sku: 'S'.repeat(65) }],
      ['an empty name', { name: '' }],
      ['a blank name', { name: '   ' }],
      ['a name longer than 200 characters', { name: 'n'.repeat(201) }],
      ['a negative price', { priceCents: -1 }],
      ['a price above 10000000', { priceCents: 10_000_001 }],
      ['a lower-case currency', { currency: 'usd' }],
      ['a two-letter currency', { currency: 'US' }],
      ['a four-letter currency', { currency: 'USDX' }],
      ['a negative stock', { stock: -1 }],
    ])('rejects %s with BAD_USER_INPUT and writes nothing', async (_case, override) => {
      const before = await productCount();
      const input = { ...valid, sku: `BAD-${randomUUID().slice(0, 8)}`, ...override };
      const response = await createProduct(input);
      expect(codesOf(response)).toEqual(['BAD_USER_INPUT']);
      expect(response.body.data ?? null).toBeNull();
      expect(await productCount()).toBe(before);
      expect(await query('SELECT 1 FROM products WHERE sku = $1', [input.sku])).toEqual([]);
    });
  });

  describe('page size clamping', () => {
    it('clamps first above 100 to 100', async () => {
      await withClient(server.databaseUrl, (client) =>
        client.query(
          `INSERT INTO products (id, sku, name, price_cents, currency, stock, created_at)
           SELECT gen_random_uuid(), 'BULK-' || lpad(n::text, 3, '0'), 'Bulk product ' || n, 100, 'USD', 10, now()
           FROM generate_series(1, 110) AS n`,
        ),
      );
      // More products than the largest page, so that clamping is visible.
      expect(await productCount()).toBeGreaterThan(101);

      for (const first of [101, 1000, 2_147_483_647]) {
        const response = await products(first);
        expect(response.body.errors).toBeUndefined();
        expect(response.body.data?.products.edges).toHaveLength(100);
        expect(response.body.data?.products.pageInfo.hasNextPage).toBe(true);
      }
      expect((await products(100)).body.data?.products.edges).toHaveLength(100);
    });
  });
});
