// A client that places an order and retries safely: one idempotency key per intent, sent again
// unchanged on every retry, so the server executes the order at most once and a retry after a
// lost response gets the first answer. See docs/idempotency.md ("Errors and what to do").
//
// Run against a local server (npm start):
//   TOKEN=$(npm run --silent token -- alice) npx jiti examples/retrying-client.ts <product id> [quantity]
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { print } from 'graphql';
import {
  CreateOrderDocument,
  type CreateOrderInput,
  type CreateOrderMutation,
  type CreateOrderMutationVariables,
} from '../test/contract/generated/graphql';

/** The order as createOrder returns it (the typed CreateOrder operation's selection). */
export type PlacedOrder = CreateOrderMutation['createOrder']['order'];

/** Codes after which the same request with the same key may still succeed (docs/idempotency.md). */
const RETRYABLE_CODES: ReadonlySet<string> = new Set(['IDEMPOTENCY_REQUEST_IN_PROGRESS', 'SERVICE_UNAVAILABLE', 'INTERNAL_SERVER_ERROR']);

/** How {@link placeOrderWithRetries} reaches the server and when it gives up. */
export interface PlaceOrderOptions {
  /** The GraphQL endpoint, e.g. http://127.0.0.1:4000/graphql. */
  readonly url: string;
  /** The bearer token of the buyer. */
  readonly token: string;
  /** The order to place. */
  readonly input: CreateOrderInput;
  /** The intent's key when the caller keeps it (e.g. persisted with the cart); default: a new random UUID. */
  readonly idempotencyKey?: string;
  /** The fetch to use; default: the global fetch. */
  readonly fetchImpl?: typeof fetch;
  /** Attempts in all, the first included; default 5. */
  readonly maxAttempts?: number;
  /** Backoff ceiling of the first retry, doubled on each further one; default 200 ms. */
  readonly baseDelayMs?: number;
  /** Largest backoff ceiling; default 8,000 ms. */
  readonly maxDelayMs?: number;
  /** Time allowed to one attempt before it counts as a network error; default 10,000 ms. */
  readonly attemptTimeoutMs?: number;
  /** Called after each attempt, e.g. to log it. */
  readonly onAttempt?: (report: AttemptReport) => void;
}

/** What one attempt ended with; `failed` means not retried (not retryable, or no attempts left). */
export type AttemptOutcome =
  | { readonly kind: 'placed'; readonly replayed: boolean }
  | { readonly kind: 'retrying'; readonly code: string; readonly delayMs: number }
  | { readonly kind: 'failed'; readonly code: string };

/** One attempt, as reported to {@link PlaceOrderOptions.onAttempt}. */
export interface AttemptReport {
  readonly attempt: number;
  readonly idempotencyKey: string;
  readonly outcome: AttemptOutcome;
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
 * code (`INSUFFICIENT_STOCK`, `IDEMPOTENCY_KEY_REUSED`, ...), `NETWORK_ERROR`, or `HTTP_<status>`.
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

/** What one request ended with, before the retry policy looks at it. */
type AttemptResult =
  | { readonly kind: 'placed'; readonly order: PlacedOrder; readonly replayed: boolean }
  | { readonly kind: 'retryable'; readonly code: string; readonly message: string; readonly retryAfterMs: number; readonly cause?: unknown }
  | { readonly kind: 'failed'; readonly code: string; readonly message: string };

interface GraphQLBody {
  data?: CreateOrderMutation | null;
  errors?: { message: string; extensions?: { code?: unknown; retryAfterSeconds?: unknown } }[];
}

/**
 * Places an order, retrying with the same idempotency key after network errors, HTTP 5xx and the
 * retryable codes, with exponential backoff and full jitter. Throws {@link PlaceOrderError}.
 */
export async function placeOrderWithRetries(options: PlaceOrderOptions): Promise<PlaceOrderResult> {
  const { maxAttempts = 5, baseDelayMs = 200, maxDelayMs = 8_000 } = options;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) throw new RangeError(`maxAttempts must be a positive integer, got ${maxAttempts}`);
  // Created once, before the first attempt: every retry of this intent must carry the same key.
  const idempotencyKey = options.idempotencyKey ?? randomUUID();

  for (let attempt = 1; ; attempt++) {
    const result = await sendCreateOrder(options, idempotencyKey);
    if (result.kind === 'placed') {
      options.onAttempt?.({ attempt, idempotencyKey, outcome: { kind: 'placed', replayed: result.replayed } });
      return { order: result.order, idempotencyKey, attempts: attempt, replayed: result.replayed };
    }
    if (result.kind === 'failed' || attempt >= maxAttempts) {
      options.onAttempt?.({ attempt, idempotencyKey, outcome: { kind: 'failed', code: result.code } });
      const reason = result.kind === 'failed' ? result.message : `gave up after ${attempt} attempts: ${result.message}`;
      throw new PlaceOrderError(reason, result.code, attempt, idempotencyKey, {
        cause: result.kind === 'retryable' ? result.cause : undefined,
      });
    }
    const delayMs = Math.max(result.retryAfterMs, fullJitter(attempt, baseDelayMs, maxDelayMs));
    options.onAttempt?.({ attempt, idempotencyKey, outcome: { kind: 'retrying', code: result.code, delayMs } });
    await new Promise((resolve) => setTimeout(resolve, delayMs));
  }
}

/** A random delay in [0, min(max, base * 2^(attempt-1))): spreads retries of many clients apart. */
function fullJitter(attempt: number, baseDelayMs: number, maxDelayMs: number): number {
  return Math.round(Math.random() * Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1)));
}

/** Sends createOrder once and classifies the answer. */
async function sendCreateOrder(options: PlaceOrderOptions, idempotencyKey: string): Promise<AttemptResult> {
  const fetchImpl = options.fetchImpl ?? fetch;
  const variables: CreateOrderMutationVariables = { input: options.input, key: idempotencyKey };
  let status: number;
  let replayed: boolean;
  let text: string;
  try {
    const response = await fetchImpl(options.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', authorization: `Bearer ${options.token}` },
      body: JSON.stringify({ query: print(CreateOrderDocument), variables }),
      signal: AbortSignal.timeout(options.attemptTimeoutMs ?? 10_000),
    });
    status = response.status;
    replayed = response.headers.get('idempotent-replayed') === 'true';
    if (status >= 500) {
      return { kind: 'retryable', code: `HTTP_${status}`, message: `HTTP ${status}`, retryAfterMs: 0 };
    }
    text = await response.text();
  } catch (error) {
    // No answer (refused, reset, timed out, cut mid-body): the order may or may not have committed,
    // and only a retry with the same key can tell without risking a second order.
    return { kind: 'retryable', code: 'NETWORK_ERROR', message: `network error: ${String(error)}`, retryAfterMs: 0, cause: error };
  }

  let body: GraphQLBody;
  try {
    body = JSON.parse(text) as GraphQLBody;
  } catch {
    return { kind: 'failed', code: `HTTP_${status}`, message: `HTTP ${status} with a body that is not JSON` };
  }
  const error = body.errors?.[0];
  if (error) {
    const code = typeof error.extensions?.code === 'string' ? error.extensions.code : `HTTP_${status}`;
    if (!RETRYABLE_CODES.has(code)) return { kind: 'failed', code, message: error.message };
    const retryAfterSeconds = error.extensions?.retryAfterSeconds;
    const retryAfterMs = typeof retryAfterSeconds === 'number' && retryAfterSeconds > 0 ? retryAfterSeconds * 1000 : 0;
    return { kind: 'retryable', code, message: error.message, retryAfterMs };
  }
  const order = body.data?.createOrder.order;
  if (!order) return { kind: 'failed', code: `HTTP_${status}`, message: `HTTP ${status} without an order or an error` };
  return { kind: 'placed', order, replayed };
}

async function main(argv: readonly string[]): Promise<void> {
  const [productId, quantity = '1'] = argv;
  const token = process.env.TOKEN;
  if (!productId || !token) {
    console.error('usage: TOKEN=<bearer token> [GRAPHQL_URL=...] npx jiti examples/retrying-client.ts <product id> [quantity]');
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
