import { withClient } from './database';
import { storedOrderIds } from './records';
import { codeOf } from './responses';
import type { GraphQLResponse } from './server';

const CREATE_ORDER = `mutation($input: CreateOrderInput!, $key: IdempotencyKey) {
  createOrder(input: $input, idempotencyKey: $key) { order { id totalCents lines { quantity product { id } } } }
}`;

export interface CreateOrderData {
  createOrder: { order: { id: string; totalCents: number; lines: { quantity: number; product: { id: string } }[] } } | null;
}

export type CreateOrderResponse = GraphQLResponse<CreateOrderData>;

/** `extensions.idempotency[0]` of a response. */
export interface Marker {
  key: string;
  replayed: boolean;
}

export async function createOrder(
  url: string,
  token: string,
  key: string,
  productId: string,
  timeoutMs = 20_000,
): Promise<CreateOrderResponse> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query: CREATE_ORDER, variables: { input: { lines: [{ productId, quantity: 1 }] }, key } }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await response.text();
  let body: CreateOrderResponse['body'];
  try {
    body = JSON.parse(text) as CreateOrderResponse['body'];
  } catch {
    body = { errors: [{ message: `not JSON: ${text.slice(0, 200)}` }] };
  }
  return { status: response.status, headers: response.headers, body };
}

/** The order of a successful response, else undefined. */
export function orderIdOf(response: CreateOrderResponse): string | undefined {
  return response.body.errors ? undefined : response.body.data?.createOrder?.order.id;
}

export function markerOf(response: CreateOrderResponse): Marker | undefined {
  return (response.body.extensions?.idempotency as Marker[] | undefined)?.[0];
}

/** Whether a failed response is the retryable "database unavailable" answer (by code or by HTTP status). */
export function isServiceUnavailable(response: CreateOrderResponse): boolean {
  return response.status === 503 || codeOf(response) === 'SERVICE_UNAVAILABLE';
}

/** Runs one statement on its own connection. */
export function sql<T>(databaseUrl: string, text: string, params: unknown[] = []): Promise<T[]> {
  return withClient(databaseUrl, async (client) => (await client.query(text, params)).rows as T[]);
}

/** The id of the seeded product `sku`. */
export async function productId(databaseUrl: string, sku: string): Promise<string> {
  const [row] = await sql<{ id: string }>(databaseUrl, 'select id::text as id from products where sku = $1', [sku]);
  if (!row) throw new Error(`product ${sku} is not seeded`);
  return row.id;
}

/** One user's orders and records, read in one statement so they come from one snapshot. */
export interface Ledger {
  /** Every order of the user. */
  orderIds: string[];
  /** Records of the user: key -> the order id in the stored payload (null for a stored failure). */
  records: Record<string, string | null>;
  /** Orders of the user that no record of the user points at. */
  orphanOrders: number;
  stock: number;
}

/** Reads {@link Ledger} of `user`, with the stock of `productId`. */
export async function ledger(databaseUrl: string, user: string, productId: string): Promise<Ledger> {
  const [row] = await sql<{ orderIds: string[]; results: Record<string, string>; stock: number }>(
    databaseUrl,
    `select coalesce((select array_agg(id::text order by id) from orders where user_id = $1), '{}') as "orderIds",
            coalesce((select jsonb_object_agg(key, encode(result, 'base64')) from idempotency_records where user_id = $1), '{}')
              as results,
            (select stock from products where id = $2) as stock`,
    [user, productId],
  );
  const { orderIds, results, stock } = row!;
  const records = storedOrderIds(results);
  const recorded = new Set(Object.values(records));
  return { orderIds, records, orphanOrders: orderIds.filter((id) => !recorded.has(id)).length, stock };
}

/**
 * Waits until no session but the caller's and those in `except` is connected to the database
 * (an exited or killed server's backends end on EOF).
 */
export async function untilNoOtherConnections(databaseUrl: string, except: number[] = [], timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [row] = await sql<{ others: number }>(
      databaseUrl,
      `select count(*)::int as others from pg_stat_activity
        where datname = current_database() and pid <> all($1::int[]) and pid <> pg_backend_pid()`,
      [except],
    );
    if (row!.others === 0) return;
    if (Date.now() > deadline) throw new Error(`${row!.others} other connections are still open`);
    await sleep(50);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
