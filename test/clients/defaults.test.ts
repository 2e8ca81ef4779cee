import { ApolloClient, HttpLink, InMemoryCache } from '@apollo/client';
import { createClient, fetchExchange } from '@urql/core';
import { ProductsDocument } from '../contract/generated/graphql';
import { startTestServer, type TestServer } from '../support/server';

const ORIGIN = 'https://shop.example.com';

/** Everything the GraphQL clients' defaults send, as a browser would ask for them in a preflight. */
const CLIENT_HEADERS = [
  'content-type',
  'authorization',
  'idempotency-key',
  'apollographql-client-name',
  'apollographql-client-version',
  'x-apollo-operation-name',
];

describe('GraphQL clients with their default settings', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer({ env: { CORS_ORIGINS: ORIGIN } });
  });
  afterAll(async () => {
    await server?.close();
  });

  it("lets a browser page send Apollo Client's and urql's headers cross-origin (CORS preflight)", async () => {
    const preflight = await fetch(server.url, {
      method: 'OPTIONS',
      headers: { origin: ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': CLIENT_HEADERS.join(',') },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe(ORIGIN);
    const allowed = (preflight.headers.get('access-control-allow-headers') ?? '').toLowerCase().split(/\s*,\s*/);
    expect(allowed).toEqual(expect.arrayContaining(CLIENT_HEADERS));
    expect((preflight.headers.get('access-control-allow-methods') ?? '').split(/\s*,\s*/)).toEqual(expect.arrayContaining(['GET', 'POST']));
  });

  it('answers a query urql sends by GET (its default for queries)', async () => {
    const requests: { method: string }[] = [];
    const client = createClient({
      url: server.url,
      exchanges: [fetchExchange],
      fetch: (input, init) => {
        requests.push({ method: init?.method ?? 'GET' });
        return fetch(input, init);
      },
    });
    const result = await client.query(ProductsDocument, { first: 2 }).toPromise();
    expect(requests).toEqual([{ method: 'GET' }]);
    expect(result.error).toBeUndefined();
    expect(result.data?.products.edges).toHaveLength(2);
  });

  it('answers a query Apollo Client sends with its client awareness headers', async () => {
    const sent: Headers[] = [];
    const client = new ApolloClient({
      cache: new InMemoryCache(),
      clientAwareness: { name: 'shop-web', version: '1.2.3' },
      link: new HttpLink({
        uri: server.url,
        fetch: (input, init) => {
          sent.push(new Headers(init?.headers));
          return fetch(input, init);
        },
      }),
    });
    const result = await client.query({ query: ProductsDocument, variables: { first: 2 } });
    expect(sent[0]?.get('apollographql-client-name')).toBe('shop-web');
    expect(result.error).toBeUndefined();
    expect(result.data?.products.edges).toHaveLength(2);
    client.stop();
  });
});
