import { randomUUID } from 'node:crypto';
import { execute, extendSchema, parse } from 'graphql';
import { applyMiddleware } from 'graphql-middleware';
import { SignJWT } from 'jose';
import { permissions } from '../src/graphql/permissions';
import { buildBaseSchema } from '../src/graphql/schema';
import { withClient } from './support/database';
import { codesOf } from './support/responses';
import { type GraphQLResponse, startTestServer, type TestServer } from './support/server';

const VIEWER = '{ viewer { id roles } }';
const CREATE_PRODUCT = `mutation($input: CreateProductInput!) {
  createProduct(input: $input) { product { id sku } }
}`;
const CREATE_ORDER = `mutation($input: CreateOrderInput!) {
  createOrder(input: $input) { order { id } }
}`;
const CANCEL_ORDER = `mutation($input: CancelOrderInput!) {
  cancelOrder(input: $input) { order { id } }
}`;

const nowSeconds = () => Math.floor(Date.now() / 1000);
const base64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

describe('authentication and authorization', () => {
  let server: TestServer;

  /** Signs claims with HS256 and the server's secret unless told otherwise. */
  function sign(claims: Record<string, unknown>, options: { secret?: string; alg?: string } = {}): Promise<string> {
    return new SignJWT(claims)
      .setProtectedHeader({ alg: options.alg ?? 'HS256', typ: 'JWT' })
      .setIssuedAt()
      .sign(new TextEncoder().encode(options.secret ?? server.config.jwtSecret));
  }

  /** Posts a query with a raw Authorization header value. */
  function withAuthorization(authorization: string, query = VIEWER): Promise<GraphQLResponse> {
    return server.gql(query, undefined, { headers: { authorization } });
  }

  function expectRejectedCredentials(response: GraphQLResponse): void {
    expect(response.status).toBe(401);
    // RFC 6750 section 3.1: a token that is present but unusable is `invalid_token`.
    expect(response.headers.get('www-authenticate')).toMatch(/^Bearer (?:.*, )?error="invalid_token"(?:,|$)/);
    expect(codesOf(response)).toEqual(['UNAUTHENTICATED']);
    expect(response.body.data ?? null).toBeNull();
    expect(JSON.stringify(response.body)).not.toMatch(/stacktrace|\bat .+\.ts:\d+/);
  }

  async function countRows(table: 'products' | 'orders'): Promise<number> {
    return withClient(server.databaseUrl, async (client) => {
      const result = await client.query<{ count: string }>(`SELECT count(*) FROM ${table}`);
      return Number(result.rows[0]?.count);
    });
  }

  function newProduct(sku: string) {
    return { sku, name: 'Auth test product', priceCents: 1000, currency: 'USD', stock: 10 };
  }

  function idempotencyHeaders(): Record<string, string> {
    return { 'idempotency-key': randomUUID() };
  }

  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(async () => {
    await server.close();
  });

  describe('viewer', () => {
    it('is null for an anonymous caller', async () => {
      const response = await server.gql(VIEWER);
      expect(response.status).toBe(200);
      expect(response.body.errors).toBeUndefined();
      expect(response.body.data).toEqual({ viewer: null });
    });

    it('carries the id and roles of a valid token', async () => {
      const user = await server.gql(VIEWER, undefined, { token: await server.token('alice') });
      expect(user.body).toEqual({ data: { viewer: { id: 'alice', roles: [] } } });

      const admin = await server.gql(VIEWER, undefined, { token: await server.token('root', { admin: true }) });
      expect(admin.body).toEqual({ data: { viewer: { id: 'root', roles: ['admin'] } } });
    });

    it('has no roles when the token has no roles claim', async () => {
      const token = await sign({ sub: 'carol', exp: nowSeconds() + 60 });
      const response = await server.gql(VIEWER, undefined, { token });
      expect(response.body).toEqual({ data: { viewer: { id: 'carol', roles: [] } } });
    });

    it('accepts a subject of exactly 128 characters', async () => {
      const sub = 's'.repeat(128);
      const response = await server.gql(VIEWER, undefined, { token: await sign({ sub, exp: nowSeconds() + 60 }) });
      expect(response.body).toEqual({ data: { viewer: { id: sub, roles: [] } } });
    });

    it('accepts the bearer scheme in any letter case', async () => {
      const token = await server.token('dave');
      const response = await withAuthorization(`bearer ${token}`);
      expect(response.body).toEqual({ data: { viewer: { id: 'dave', roles: [] } } });
    });
  });

  describe('rejected credentials answer 401 with www-authenticate, even on public fields', () => {
    it('rejects a token signed with another secret', async () => {
      const token = await sign(
        { sub: 'mallory', roles: ['admin'], exp: nowSeconds() + 60 },
        { secret: 'another-secret-that-is-long-enough-0123456789' },
      );
      expectRejectedCredentials(await server.gql(VIEWER, undefined, { token }));
    });

    it('rejects an unsigned token (alg: none)', async () => {
      const token = `${base64url({ alg: 'none', typ: 'JWT' })}.${base64url({ sub: 'mallory', roles: ['admin'], exp: nowSeconds() + 60 })}.`;
      expectRejectedCredentials(await server.gql(VIEWER, undefined, { token }));
    });

    it.each(['HS384', 'HS512'])('rejects a token signed with %s instead of HS256', async (alg) => {
      const token = await sign({ sub: 'mallory', exp: nowSeconds() + 60 }, { alg });
      expectRejectedCredentials(await server.gql(VIEWER, undefined, { token }));
    });

    it('rejects an expired token', async () => {
      const token = await sign({ sub: 'alice', exp: nowSeconds() - 60 });
      expectRejectedCredentials(await server.gql(VIEWER, undefined, { token }));
    });

    it('rejects a token that is not valid yet', async () => {
      const token = await sign({ sub: 'alice', nbf: nowSeconds() + 600, exp: nowSeconds() + 1200 });
      expectRejectedCredentials(await server.gql(VIEWER, undefined, { token }));
    });

    it('rejects a token whose payload was altered after signing', async () => {
      const [header, , signature] = (await server.token('alice')).split('.');
      const forged = `${header}.${base64url({ sub: 'alice', roles: ['admin'], exp: nowSeconds() + 60 })}.${signature}`;
      expectRejectedCredentials(await server.gql(VIEWER, undefined, { token: forged }));
    });

    it.each([
      ['an empty sub', { sub: '' }],
      ['a sub longer than 128 characters', { sub: 's'.repeat(129) }],
      ['no sub', {}],
      ['a numeric sub', { sub: 42 }],
      ['roles that are a string', { sub: 'alice', roles: 'admin' }],
      ['roles holding a number', { sub: 'alice', roles: [1] }],
      ['roles holding null', { sub: 'alice', roles: ['admin', null] }],
      ['roles that are an object', { sub: 'alice', roles: { admin: true } }],
    ])('rejects a token with %s', async (_case, claims) => {
      const token = await sign({ ...claims, exp: nowSeconds() + 60 });
      expectRejectedCredentials(await server.gql(VIEWER, undefined, { token }));
    });

    it.each([
      'Basic x',
      'Bearer',
      'Bearer    ',
      'Bearer a b',
      'Token abc',
      'Bearerabc',
      'Bearer not a token',
    ])('rejects the malformed Authorization header %j', async (authorization) => {
      expectRejectedCredentials(await withAuthorization(authorization));
    });

    it('rejects a bearer value that is not a JWT', async () => {
      expectRejectedCredentials(await withAuthorization('Bearer abc.def.ghi'));
    });

    it('rejects a bad token on a mutation without executing it', async () => {
      const before = await countRows('products');
      const token = await sign({ sub: 'mallory', roles: ['admin'], exp: nowSeconds() - 60 });
      const response = await server.gql(CREATE_PRODUCT, { input: newProduct('AUTH-EXPIRED') }, { token, headers: idempotencyHeaders() });
      expectRejectedCredentials(response);
      expect(await countRows('products')).toBe(before);
    });
  });

  describe('fields that need a user', () => {
    it('rejects orders without a token', async () => {
      const response = await server.gql('{ orders { edges { node { id } } } }');
      expect(codesOf(response)).toEqual(['UNAUTHENTICATED']);
      expect(response.body.data ?? null).toBeNull();
    });

    it('answers a request without a token with a field error, not a 401 challenge', async () => {
      // An anonymous request is not refused (docs/graphql-over-http.md, row 28): no challenge
      // and no invalid_token, since no token was sent.
      const response = await server.gql('{ orders { edges { node { id } } } }');
      expect(response.status).toBe(200);
      expect(response.headers.get('www-authenticate')).toBeNull();
    });

    it('rejects order(id) without a token', async () => {
      const response = await server.gql('query($id: ID!) { order(id: $id) { id } }', { id: randomUUID() });
      expect(codesOf(response)).toEqual(['UNAUTHENTICATED']);
    });

    it('rejects createOrder without a token and places nothing', async () => {
      const product = await withClient(server.databaseUrl, async (client) => {
        const result = await client.query<{ id: string; stock: number }>('SELECT id, stock FROM products ORDER BY sku LIMIT 1');
        return result.rows[0]!;
      });
      const ordersBefore = await countRows('orders');
      const response = await server.gql(
        CREATE_ORDER,
        { input: { lines: [{ productId: product.id, quantity: 1 }] } },
        { headers: idempotencyHeaders() },
      );
      expect(codesOf(response)).toEqual(['UNAUTHENTICATED']);
      expect(response.body.data ?? null).toBeNull();
      expect(await countRows('orders')).toBe(ordersBefore);
      const stock = await withClient(server.databaseUrl, async (client) => {
        const result = await client.query<{ stock: number }>('SELECT stock FROM products WHERE id = $1', [product.id]);
        return result.rows[0]?.stock;
      });
      expect(stock).toBe(product.stock);
    });

    it('rejects cancelOrder without a token', async () => {
      const response = await server.gql(CANCEL_ORDER, { input: { orderId: randomUUID() } }, { headers: idempotencyHeaders() });
      expect(codesOf(response)).toEqual(['UNAUTHENTICATED']);
      expect(response.body.data ?? null).toBeNull();
    });

    it('lets a user with a valid token list their orders', async () => {
      const response = await server.gql('{ orders { edges { node { id } } } }', undefined, { token: await server.token('erin') });
      expect(response.body).toEqual({ data: { orders: { edges: [] } } });
    });
  });

  describe('catalog administration', () => {
    it('rejects createProduct by an anonymous caller as UNAUTHENTICATED and writes nothing', async () => {
      const before = await countRows('products');
      const response = await server.gql(CREATE_PRODUCT, { input: newProduct('AUTH-ANON') }, { headers: idempotencyHeaders() });
      expect(codesOf(response)).toEqual(['UNAUTHENTICATED']);
      expect(response.body.data ?? null).toBeNull();
      expect(await countRows('products')).toBe(before);
    });

    it('rejects createProduct by a user without the admin role as FORBIDDEN and writes nothing', async () => {
      const before = await countRows('products');
      const response = await server.gql(
        CREATE_PRODUCT,
        { input: newProduct('AUTH-USER') },
        { token: await server.token('alice'), headers: idempotencyHeaders() },
      );
      expect(codesOf(response)).toEqual(['FORBIDDEN']);
      expect(response.body.data ?? null).toBeNull();
      expect(await countRows('products')).toBe(before);
    });

    it('lets an admin create a product', async () => {
      const response = await server.gql<{ createProduct: { product: { sku: string } } }>(
        CREATE_PRODUCT,
        { input: newProduct('AUTH-ADMIN') },
        { token: await server.token('root', { admin: true }), headers: idempotencyHeaders() },
      );
      expect(response.body.errors).toBeUndefined();
      expect(response.body.data?.createProduct.product.sku).toBe('AUTH-ADMIN');
    });
  });

  describe('deny by default', () => {
    // A root field added to the schema without a rule must be refused, even to an admin.
    const schema = applyMiddleware(
      extendSchema(
        buildBaseSchema(),
        parse('extend type Query { unlistedQuery: String } extend type Mutation { unlistedMutation: String }'),
      ),
      permissions,
    );
    const admin = { viewer: { id: 'root', roles: ['admin'] } };

    it('refuses a root query field that has no rule', async () => {
      const result = await execute({
        schema,
        document: parse('{ unlistedQuery }'),
        rootValue: { unlistedQuery: 'leaked' },
        contextValue: admin,
      });
      expect(result.data?.unlistedQuery ?? null).toBeNull();
      expect(result.errors?.map((error) => error.originalError)).toEqual([expect.objectContaining({ code: 'FORBIDDEN' })]);
    });

    it('refuses a root mutation field that has no rule', async () => {
      const result = await execute({
        schema,
        document: parse('mutation { unlistedMutation }'),
        rootValue: { unlistedMutation: 'executed' },
        contextValue: admin,
      });
      expect(result.data?.unlistedMutation ?? null).toBeNull();
      expect(result.errors?.map((error) => error.originalError)).toEqual([expect.objectContaining({ code: 'FORBIDDEN' })]);
    });

    it('still answers a listed public field through the same permissions', async () => {
      const result = await execute({ schema, document: parse('{ viewer { id } }'), contextValue: admin });
      expect(result.errors).toBeUndefined();
      expect(result.data).toEqual({ viewer: { id: 'root' } });
    });
  });
});
