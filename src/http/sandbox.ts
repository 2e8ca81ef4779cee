import { randomUUID } from 'node:crypto';
import type { ApolloServerPlugin } from '@apollo/server';
import { ApolloServerPluginLandingPageLocalDefault } from '@apollo/server/plugin/landingPage/default';

/** What the development landing page opens with. */
export interface SandboxOptions {
  /** A development bearer token put in the Authorization header. */
  readonly token?: string;
  /** A product id for the example variables. */
  readonly exampleProductId?: string;
}

/**
 * The ready operations the Sandbox opens with, in the order a newcomer would run them. The
 * Sandbox runs the operation under the cursor; all of them share the pre-filled variables.
 */
export const SANDBOX_DOCUMENT = `# 1. Browse the catalog (public).
query Products {
  products(first: 20) {
    edges { node { id sku name priceCents currency stock } }
    pageInfo { hasNextPage endCursor }
  }
}

# 2. Place an order. The Idempotency-Key header (see Headers) makes it idempotent.
# 3. Run it again: the response is the first one, replayed (extensions.idempotency
#    says replayed: true) and no second order is created.
mutation CreateOrder($input: CreateOrderInput!) {
  createOrder(input: $input) {
    order {
      id
      status
      totalCents
      currency
      createdAt
      lines { quantity unitPriceCents lineTotalCents product { sku name } }
    }
  }
}

# 4. Look at the stored record of that key ($key is the same key as the header).
query IdempotencyRecord($key: IdempotencyKey!) {
  idempotencyRecord(key: $key) { key operation outcome createdAt expiresAt }
}

# 5. Your orders, newest first.
query MyOrders {
  orders(first: 10) {
    edges { node { id status totalCents currency createdAt lines { quantity product { name } } } }
  }
}
`;

/** The Apollo Sandbox landing page, pre-filled with the ready operations, variables, a token and a key. */
export function sandboxLandingPage(options: SandboxOptions = {}): ApolloServerPlugin {
  // One key per server start: running the example twice shows the replay of the first run.
  const key = `sandbox-${randomUUID()}`;
  const headers: Record<string, string> = { 'Idempotency-Key': key };
  if (options.token) headers.Authorization = `Bearer ${options.token}`;
  return ApolloServerPluginLandingPageLocalDefault({
    embed: { runTelemetry: false, initialState: { pollForSchemaUpdates: false } },
    includeCookies: false,
    document: SANDBOX_DOCUMENT,
    variables: {
      input: { lines: [{ productId: options.exampleProductId ?? '<product id>', quantity: 1 }], note: 'first order' },
      key,
    },
    headers,
  });
}
