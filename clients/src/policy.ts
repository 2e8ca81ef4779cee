/**
 * When a request may be sent again with the same idempotency key, and after how long. Pure: the
 * Apollo link, the urql exchange and the retrying fetch all ask this one function.
 */

/** What one attempt ended with, when it did not end with a usable answer. */
export type AttemptFailure =
  /** No answer: refused, reset, cut mid-body. The server may or may not have committed. */
  | { readonly kind: 'network'; readonly error?: unknown }
  /** The client stopped waiting (`attemptTimeoutMs`). The server may still commit. */
  | { readonly kind: 'timeout' }
  /** An HTTP status without a GraphQL answer the client could read (a gateway's 502, 503, ...). */
  | { readonly kind: 'http'; readonly status: number; readonly retryAfterSeconds?: number }
  /** A GraphQL answer whose errors carry these codes. */
  | { readonly kind: 'graphql'; readonly codes: readonly (string | undefined)[]; readonly retryAfterSeconds?: number };

/** How hard to try. Every field has a default. */
export interface RetryOptions {
  /** Attempts in all, the first included; default 5. */
  readonly maxAttempts?: number;
  /** Backoff ceiling of the first retry, doubled on each further one; default 200 ms. */
  readonly baseDelayMs?: number;
  /** Largest backoff ceiling; default 8,000 ms. */
  readonly maxDelayMs?: number;
  /** Time one attempt may take before it counts as a timeout; default 10,000 ms. */
  readonly attemptTimeoutMs?: number;
  /** A server hint (Retry-After, retryAfterSeconds) longer than this ends the retries; default 60,000 ms. */
  readonly maxRetryAfterMs?: number;
  /** Source of jitter in [0, 1); default Math.random. */
  readonly random?: () => number;
}

/** {@link RetryOptions} with every default applied. */
export type RetryPolicy = Required<RetryOptions>;

/** The answer of {@link decideRetry}. */
export type RetryDecision =
  | { readonly retry: true; readonly delayMs: number; readonly reason: string }
  | { readonly retry: false; readonly reason: string };

/**
 * GraphQL codes after which the same request with the same key may still succeed. Everything
 * else (INSUFFICIENT_STOCK, IDEMPOTENCY_KEY_REUSED, IDEMPOTENCY_KEY_EXPIRED, BAD_USER_INPUT,
 * INTERNAL_SERVER_ERROR, ...) is final: sending it again would get the same answer, or a replay of it.
 */
export const RETRYABLE_CODES: ReadonlySet<string> = new Set(['SERVICE_UNAVAILABLE', 'IDEMPOTENCY_REQUEST_IN_PROGRESS', 'RATE_LIMITED']);

/** Applies the defaults and checks the numbers; throws RangeError naming a bad option. */
export function retryPolicy(options: RetryOptions = {}): RetryPolicy {
  const policy: RetryPolicy = {
    maxAttempts: options.maxAttempts ?? 5,
    baseDelayMs: options.baseDelayMs ?? 200,
    maxDelayMs: options.maxDelayMs ?? 8_000,
    attemptTimeoutMs: options.attemptTimeoutMs ?? 10_000,
    maxRetryAfterMs: options.maxRetryAfterMs ?? 60_000,
    random: options.random ?? Math.random,
  };
  if (!Number.isInteger(policy.maxAttempts) || policy.maxAttempts < 1) {
    throw new RangeError(`maxAttempts must be a positive integer, got ${policy.maxAttempts}`);
  }
  for (const name of ['baseDelayMs', 'maxDelayMs', 'attemptTimeoutMs', 'maxRetryAfterMs'] as const) {
    if (!Number.isFinite(policy[name]) || policy[name] < 0)
      throw new RangeError(`${name} must be a non-negative number, got ${policy[name]}`);
  }
  return policy;
}

/**
 * Whether to send attempt `attempt + 1` after attempt `attempt` (1-based) failed this way. A
 * request without an idempotency key is never retried when it may have written something: only a
 * keyed mutation, or a read, is safe to send twice.
 */
export function decideRetry(failure: AttemptFailure, attempt: number, policy: RetryPolicy, safeToRepeat: boolean): RetryDecision {
  const reason = describe(failure);
  if (!safeToRepeat) return { retry: false, reason: `${reason}; a mutation without an idempotency key is never sent twice` };
  const hintSeconds = retryableHint(failure);
  if (hintSeconds === null) return { retry: false, reason: `${reason} is final` };
  if (attempt >= policy.maxAttempts) return { retry: false, reason: `${reason}; gave up after ${attempt} attempts` };
  const hintMs = hintSeconds * 1000;
  if (hintMs > policy.maxRetryAfterMs)
    return { retry: false, reason: `${reason}; the server asks to wait ${hintSeconds} s, longer than allowed` };
  return { retry: true, delayMs: Math.max(hintMs, backoffDelay(attempt, policy)), reason };
}

/** True when the same request with the same key may still succeed: the outcome is not known yet. */
export function isRetryable(failure: AttemptFailure): boolean {
  return retryableHint(failure) !== null;
}

/** Full jitter: a random delay in [0, min(maxDelayMs, baseDelayMs * 2^(attempt-1))), so many clients spread apart. */
export function backoffDelay(attempt: number, policy: RetryPolicy): number {
  return Math.floor(policy.random() * Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1)));
}

/** Seconds the server asked to wait (0 without a hint), or null when the failure is final. */
function retryableHint(failure: AttemptFailure): number | null {
  switch (failure.kind) {
    case 'network':
    case 'timeout':
      return 0;
    case 'http':
      return failure.status >= 500 || failure.status === 429 ? (failure.retryAfterSeconds ?? 0) : null;
    case 'graphql':
      return failure.codes.length > 0 && failure.codes.every((code) => code !== undefined && RETRYABLE_CODES.has(code))
        ? (failure.retryAfterSeconds ?? 0)
        : null;
    default:
      return unreachable(failure);
  }
}

function describe(failure: AttemptFailure): string {
  switch (failure.kind) {
    case 'network':
      return 'network error';
    case 'timeout':
      return 'timeout';
    case 'http':
      return `HTTP ${failure.status}`;
    case 'graphql':
      return failure.codes.map((code) => code ?? 'an error without a code').join(', ');
    default:
      return unreachable(failure);
  }
}

function unreachable(value: never): never {
  throw new Error(`unexpected failure ${JSON.stringify(value)}`);
}

/**
 * A `Retry-After` header in seconds: a number of seconds or an HTTP date (RFC 9110), else undefined.
 * `now` is injectable for tests.
 */
export function parseRetryAfter(value: string | null | undefined, now: number = Date.now()): number | undefined {
  if (value === null || value === undefined || value.trim() === '') return undefined;
  if (/^\s*\d+\s*$/.test(value)) return Number(value);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, Math.ceil((date - now) / 1000));
}

/** The errors of a GraphQL answer, as far as retrying cares. */
interface GraphQLErrorLike {
  readonly extensions?: { readonly code?: unknown; readonly retryAfterSeconds?: unknown } | null;
}

/**
 * The failure a GraphQL answer stands for, or null when it is a usable answer (data, or errors
 * alongside data). `retryAfterHeader` is the response's Retry-After, when the caller can see it.
 */
export function failureOfResult(
  result: { readonly data?: unknown; readonly errors?: readonly GraphQLErrorLike[] | null },
  retryAfterHeader?: string | null,
): AttemptFailure | null {
  const errors = result.errors ?? [];
  if (errors.length === 0 || (result.data !== null && result.data !== undefined)) return null;
  const codes = errors.map((error) => (typeof error.extensions?.code === 'string' ? error.extensions.code : undefined));
  const hints = errors
    .map((error) => error.extensions?.retryAfterSeconds)
    .filter((hint): hint is number => typeof hint === 'number' && Number.isFinite(hint) && hint >= 0);
  const header = parseRetryAfter(retryAfterHeader);
  const retryAfterSeconds = Math.max(0, header ?? 0, ...hints);
  return { kind: 'graphql', codes, retryAfterSeconds };
}
