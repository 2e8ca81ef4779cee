import { type Exchange, makeOperation, mapExchange, type Operation, type OperationResult } from '@urql/core';
import { type IdempotencyCall, type IdempotencyOptions, keyForCall, settleCall } from './calls';
import { type AttemptReport, createRetryingFetch, RetriesExhaustedError } from './fetch';
import { memoryIntentStore } from './intents';
import { planOperation } from './operation';
import { failureOfResult, isRetryable } from './policy';
import { IDEMPOTENT_MUTATIONS } from './schema.generated';

/** Options of {@link idempotencyExchange}. */
export interface IdempotencyExchangeOptions extends IdempotencyOptions {
  /** Called after every attempt, e.g. to log it. */
  readonly onAttempt?: (report: AttemptReport) => void;
}

interface ExchangeContext {
  readonly idempotency?: IdempotencyCall;
  /** Set by the exchange: the key of this call. */
  readonly idempotencyKey?: string;
}

/**
 * An urql exchange, placed before `fetchExchange`: it gives every idempotent mutation a key (the
 * Idempotency-Key header) once per logical call, and has the fetch send the request again with that
 * same key after a network error, a timeout, a 5xx, SERVICE_UNAVAILABLE,
 * IDEMPOTENCY_REQUEST_IN_PROGRESS or RATE_LIMITED. A mutation without a key is sent once.
 */
export function idempotencyExchange(options: IdempotencyExchangeOptions = {}): Exchange {
  const fields = new Set(options.idempotentMutations ?? IDEMPOTENT_MUTATIONS);
  const intents = options.intents ?? memoryIntentStore();
  // Validates the numbers once, at set-up.
  createRetryingFetch(options);

  return mapExchange({
    onOperation(operation) {
      // Teardowns and subscriptions pass unchanged and without delay.
      if (operation.kind !== 'query' && operation.kind !== 'mutation') return operation;
      const plan = planOperation(operation.query, undefined, operation.variables as Record<string, unknown>, fields);
      const context = operation.context as typeof operation.context & ExchangeContext;
      const prepare = (key: string | undefined): Operation => {
        const base = typeof context.fetchOptions === 'function' ? context.fetchOptions() : (context.fetchOptions ?? {});
        const headers = new Headers(base.headers);
        if (key !== undefined) headers.set('Idempotency-Key', key);
        const retrying = createRetryingFetch({ ...options, fetch: context.fetch, safeToRepeat: () => plan.kind !== 'keyless' });
        return makeOperation(operation.kind, operation, {
          ...context,
          idempotencyKey: key,
          fetchOptions: { ...base, headers: Object.fromEntries(headers) },
          fetch: retrying,
        } as Operation['context']);
      };
      if (plan.kind !== 'header-key') return prepare(undefined);
      if (context.idempotencyKey) return prepare(context.idempotencyKey);
      return keyForCall(context.idempotency, intents).then(prepare);
    },
    async onResult(result) {
      const context = result.operation.context as ExchangeContext;
      await settleCall(context.idempotency, intents, outcomeKnown(result));
      return result;
    },
  });
}

/** False when no answer came, or the last one was still a retryable failure: the intent keeps its key. */
function outcomeKnown(result: OperationResult): boolean {
  const networkError = result.error?.networkError;
  if (networkError) return !(networkError instanceof RetriesExhaustedError);
  const failure = failureOfResult({ data: result.data, errors: result.error?.graphQLErrors });
  return failure === null || !isRetryable(failure);
}
