// A client that places an order and retries safely, with nothing but fetch and the client
// package's retrying fetch (clients/): one idempotency key per intent, sent unchanged on every
// attempt, so the server executes the order at most once and a retry after a lost response gets
// the first answer. docs/idempotency.md ("A retry loop") and docs/clients.md describe it.
//
// Run against a local server (npm start):
//   npm run build && TOKEN=$(npm run --silent token -- alice) node dist/examples/retrying-client.js <product id> [quantity]
import path from 'node:path';
import { print } from 'graphql';
import {
  type AttemptReport,
  createRetryingFetch,
  newIdempotencyKey,
  RetriesExhaustedError,
  type RetryOptions,
  readIdempotency,
} from '../clients/src';
import { CreateOrderDocument, type CreateOrderInput, type CreateOrderMutation } from '../test/contract/generated/graphql';

/** One attempt, as reported to `onAttempt`. */
export type { AttemptReport };

/** The order as createOrder returns it (the typed CreateOrder operation's selection). */
export type PlacedOrder = CreateOrderMutation['createOrder']['order'];

/** How {@link placeOrderWithRetries} reaches the server and when it gives up. */
export interface PlaceOrderOptions extends RetryOptions {
  /** The GraphQL endpoint, e.g. http://127.0.0.1:4000/graphql. */
  readonly url: string;
  /** The bearer token of the buyer. */
  readonly token: string;
  /** The order to place. */
  readonly input: CreateOrderInput;
  /** The intent's key when the caller keeps it (e.g. persisted with the cart); default: a new random UUID. */
  readonly idempotencyKey?: string;
  /** The fetch that sends each attempt; default: the global fetch. */
  readonly fetchImpl?: typeof fetch;
  /** Called after each attempt, e.g. to log it. */
  readonly onAttempt?: (report: AttemptReport) => void;
}

/** The placed order, and how it was obtained. */
export interface PlaceOrderResult {
  readonly order: PlacedOrder;
  readonly idempotencyKey: string;
  readonly attempts: number;
  /** True when the server answered with the stored outcome of an earlier attempt. */
  readonly replayed: boolean;
}

/**
 * The order was not placed, or the client gave up without knowing. `code` is the GraphQL error
 * code (`INSUFFICIENT_STOCK`, `IDEMPOTENCY_KEY_REUSED`, `RATE_LIMITED`, ...), `NETWORK_ERROR`, or `HTTP_<status>`.
 */
export class PlaceOrderError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly attempts: number,
    readonly idempotencyKey: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'PlaceOrderError';
  }
}

interface GraphQLBody {
  data?: CreateOrderMutation | null;
  errors?: { message: string; extensions?: { code?: unknown } }[];
  extensions?: Record<string, unknown>;
}

/**
 * Places an order; the retrying fetch sends it again with the same key after network errors,
 * timeouts, HTTP 5xx and the retryable codes (clients/src/policy.ts). Throws {@link PlaceOrderError}.
 */
export async function placeOrderWithRetries(options: PlaceOrderOptions): Promise<PlaceOrderResult> {
  // Created once, before the first attempt: every retry of this intent must carry the same key.
  const idempotencyKey = options.idempotencyKey ?? newIdempotencyKey();
  let attempts = 0;
  const send = createRetryingFetch({
    ...options,
    fetch: options.fetchImpl,
    onAttempt: (report) => {
      attempts = report.attempt;
      options.onAttempt?.(report);
    },
  });
  let response: Response;
  try {
    response = await send(options.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/graphql-response+json, application/json',
        authorization: `Bearer ${options.token}`,
        'idempotency-key': idempotencyKey,
      },
      body: JSON.stringify({ query: print(CreateOrderDocument), variables: { input: options.input } }),
    });
  } catch (error) {
    const message = error instanceof RetriesExhaustedError ? error.message : String(error);
    throw new PlaceOrderError(message, 'NETWORK_ERROR', attempts, idempotencyKey, { cause: error });
  }
  let body: GraphQLBody;
  try {
    body = (await response.json()) as GraphQLBody;
  } catch {
    throw new PlaceOrderError(`HTTP ${response.status} with a body that is not JSON`, `HTTP_${response.status}`, attempts, idempotencyKey);
  }
  const error = body.errors?.[0];
  const order = body.data?.createOrder.order;
  if (error || !order) {
    const code = typeof error?.extensions?.code === 'string' ? error.extensions.code : `HTTP_${response.status}`;
    throw new PlaceOrderError(error?.message ?? `HTTP ${response.status} without an order`, code, attempts, idempotencyKey);
  }
  return { order, idempotencyKey, attempts, replayed: readIdempotency(body)?.replayed ?? false };
}

async function main(argv: readonly string[]): Promise<void> {
  const [productId, quantity = '1'] = argv;
  const token = process.env.TOKEN;
  if (!productId || !token) {
    console.error('usage: TOKEN=<bearer token> [GRAPHQL_URL=...] node dist/examples/retrying-client.js <product id> [quantity]');
    process.exitCode = 2;
    return;
  }
  const result = await placeOrderWithRetries({
    url: process.env.GRAPHQL_URL ?? 'http://127.0.0.1:4000/graphql',
    token,
    input: { lines: [{ productId, quantity: Number(quantity) }] },
    onAttempt: (report) => console.error(`attempt ${report.attempt} (key ${report.idempotencyKey}): ${JSON.stringify(report.outcome)}`),
  });
  console.log(JSON.stringify(result, null, 2));
}

if (process.argv[1] && path.resolve(process.argv[1]) === __filename) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    console.error(error instanceof PlaceOrderError ? `${error.code}: ${error.message}` : error);
    process.exitCode = 1;
  });
}
