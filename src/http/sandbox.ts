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

/** The example operation the Sandbox opens with. */
export const SANDBOX_DOCUMENT = `# Place an order. Run it twice: the second run replays the first answer.
mutation CreateOrder($input: CreateOrderInput!) {
  createOrder(input: $input) {
    order {
      id
      status
      totalCents
      currency
      lines { quantity unitPriceCents lineTotalCents product { sku name } }
    }
  }
}

query Products {
  products(first: 20) {
    edges { node { id sku name priceCents currency stock } }
    pageInfo { hasNextPage endCursor }
  }
}
`;

/** The Apollo Sandbox landing page, pre-filled with an example operation and a token. */
export function sandboxLandingPage(options: SandboxOptions = {}): ApolloServerPlugin {
  // One key per server start: running the example twice shows the replay of the first run.
  const headers: Record<string, string> = { 'Idempotency-Key': `sandbox-${randomUUID()}` };
  if (options.token) headers.Authorization = `Bearer ${options.token}`;
  return ApolloServerPluginLandingPageLocalDefault({
    embed: { runTelemetry: false, initialState: { pollForSchemaUpdates: false } },
    includeCookies: false,
    document: SANDBOX_DOCUMENT,
    variables: { input: { lines: [{ productId: options.exampleProductId ?? '<product id>', quantity: 1 }], note: 'first order' } },
    headers,
  });
}
