import {
  type AttemptFailure,
  decideRetry,
  failureOfResult,
  parseRetryAfter,
  type RetryOptions,
  type RetryPolicy,
  retryPolicy,
} from './policy';

/** One attempt, as reported to `onAttempt`. */
export interface AttemptReport {
  /** 1-based. */
  readonly attempt: number;
  /** The Idempotency-Key header sent, if any. */
  readonly idempotencyKey: string | undefined;
  readonly outcome:
    | { readonly kind: 'answered' }
    | { readonly kind: 'retrying'; readonly reason: string; readonly delayMs: number }
    | { readonly kind: 'gave-up'; readonly reason: string };
}

/** Options of {@link createRetryingFetch}. */
export interface RetryingFetchOptions extends RetryOptions {
  /** The fetch that sends each attempt; default the global fetch. */
  readonly fetch?: typeof fetch;
  /**
   * Whether a request may be sent more than once. Default: when it carries an Idempotency-Key
   * header, or is a GET (which never executes a mutation).
   */
  readonly safeToRepeat?: (request: Request) => boolean;
  /** Called after every attempt, e.g. to log it. */
  readonly onAttempt?: (report: AttemptReport) => void;
}

/** Thrown when no attempt got an answer: the last attempt's network error or timeout is its cause. */
export class RetriesExhaustedError extends Error {
  constructor(
    message: string,
    readonly attempts: number,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'RetriesExhaustedError';
  }
}

/**
 * A fetch that sends a GraphQL request again, unchanged and so with the same Idempotency-Key,
 * after a network error, a timeout, a 5xx, or a retryable GraphQL code, with exponential backoff
 * and full jitter. The last answer is returned as it came, for the GraphQL client to read; when no
 * attempt got one, {@link RetriesExhaustedError} is thrown.
 */
export function createRetryingFetch(options: RetryingFetchOptions = {}): typeof fetch {
  const policy = retryPolicy(options);
  const safeToRepeat = options.safeToRepeat ?? ((request: Request) => request.headers.has('idempotency-key') || request.method === 'GET');
  return (input, init) => {
    const template = new Request(input, init);
    return sendWithRetries(template, policy, options.fetch ?? fetch, safeToRepeat(template), options.onAttempt);
  };
}

/** What one attempt ended with. */
type Attempt =
  | { readonly kind: 'answered'; readonly response: Response }
  | { readonly kind: 'failed'; readonly failure: AttemptFailure; readonly last: Response | Error };

async function sendWithRetries(
  template: Request,
  policy: RetryPolicy,
  send: typeof fetch,
  safeToRepeat: boolean,
  onAttempt: RetryingFetchOptions['onAttempt'],
): Promise<Response> {
  const idempotencyKey = template.headers.get('idempotency-key') ?? undefined;
  for (let attempt = 1; ; attempt++) {
    const result = await sendOnce(template, policy, send);
    if (result.kind === 'answered') {
      onAttempt?.({ attempt, idempotencyKey, outcome: { kind: 'answered' } });
      return result.response;
    }
    const decision = decideRetry(result.failure, attempt, policy, safeToRepeat);
    if (!decision.retry) {
      onAttempt?.({ attempt, idempotencyKey, outcome: { kind: 'gave-up', reason: decision.reason } });
      if (result.last instanceof Response) return result.last;
      throw new RetriesExhaustedError(decision.reason, attempt, { cause: result.last });
    }
    onAttempt?.({ attempt, idempotencyKey, outcome: { kind: 'retrying', reason: decision.reason, delayMs: decision.delayMs } });
    await sleep(decision.delayMs, template.signal);
  }
}

async function sendOnce(template: Request, policy: RetryPolicy, send: typeof fetch): Promise<Attempt> {
  const timeout = AbortSignal.timeout(policy.attemptTimeoutMs);
  let response: Response;
  let text: string;
  try {
    response = await send(new Request(template.clone(), { signal: AbortSignal.any([template.signal, timeout]) }));
    text = await response.text();
  } catch (error) {
    // The caller's own abort is not a failure to retry.
    if (template.signal.aborted) throw error;
    const failure: AttemptFailure = timeout.aborted ? { kind: 'timeout' } : { kind: 'network', error };
    return { kind: 'failed', failure, last: error instanceof Error ? error : new Error(String(error)) };
  }
  const copy = rebuild(response, text);
  const retryAfter = response.headers.get('retry-after');
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const graphqlFailure = isGraphQLBody(body) ? failureOfResult(body, retryAfter) : null;
  if (response.status >= 500 || response.status === 429) {
    // A 5xx is retried whatever its body says; a GraphQL hint (retryAfterSeconds) still sets the wait.
    const hint = graphqlFailure?.kind === 'graphql' ? graphqlFailure.retryAfterSeconds : parseRetryAfter(retryAfter);
    return { kind: 'failed', failure: { kind: 'http', status: response.status, retryAfterSeconds: hint }, last: copy };
  }
  if (graphqlFailure) return { kind: 'failed', failure: graphqlFailure, last: copy };
  return { kind: 'answered', response: copy };
}

function isGraphQLBody(body: unknown): body is { data?: unknown; errors?: { extensions?: Record<string, unknown> }[] } {
  return typeof body === 'object' && body !== null && ('data' in body || 'errors' in body);
}

/** The response again, its body already read: a GraphQL client reads it as if it came from the network. */
function rebuild(response: Response, text: string): Response {
  const headers = new Headers(response.headers);
  // The text is decoded already; its length and encoding are no longer the wire's.
  headers.delete('content-encoding');
  headers.delete('content-length');
  return new Response(text, { status: response.status, statusText: response.statusText, headers });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
