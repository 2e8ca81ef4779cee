import { ApolloLink, Observable, ServerError, ServerParseError } from '@apollo/client';
import { type IdempotencyCall, type IdempotencyOptions, keyForCall, settleCall } from './calls';
import { memoryIntentStore } from './intents';
import { planOperation } from './operation';
import { type AttemptFailure, decideRetry, failureOfResult, isRetryable, parseRetryAfter, retryPolicy } from './policy';
import { IDEMPOTENT_MUTATIONS } from './schema.generated';

/** Options of {@link createIdempotencyLink}. */
export interface IdempotencyLinkOptions extends IdempotencyOptions {
  /** Called when an attempt failed and is retried, e.g. to log it. */
  readonly onRetry?: (report: { attempt: number; idempotencyKey: string | undefined; reason: string; delayMs: number }) => void;
}

/** The context keys the link reads and writes. */
interface LinkContext {
  readonly idempotency?: IdempotencyCall;
  /** Set by the link: the key of this call, reused when a link in front (RetryLink) sends the operation again. */
  readonly idempotencyKey?: string;
  readonly headers?: Record<string, string>;
  /** Set by HttpLink: the last HTTP response. */
  readonly response?: Response;
}

/**
 * An Apollo Client 4 link, placed before the terminating HttpLink: it gives every idempotent
 * mutation a key (the Idempotency-Key header) once per logical call, and sends the operation again
 * with that same key after a network error, a timeout, a 5xx, SERVICE_UNAVAILABLE,
 * IDEMPOTENCY_REQUEST_IN_PROGRESS or RATE_LIMITED. A mutation without a key is sent once.
 */
export function createIdempotencyLink(options: IdempotencyLinkOptions = {}): ApolloLink {
  const fields = new Set(options.idempotentMutations ?? IDEMPOTENT_MUTATIONS);
  const policy = retryPolicy(options);
  const intents = options.intents ?? memoryIntentStore();

  return new ApolloLink((operation, forward) => {
    const plan = planOperation(operation.query, operation.operationName, operation.variables, fields);
    if (plan.kind === 'keyless') return forward(operation);
    const context = operation.getContext() as LinkContext;

    return new Observable<ApolloLink.Result>((observer) => {
      let inner: { unsubscribe(): void } | undefined;
      let timer: ReturnType<typeof setTimeout> | undefined;
      let closed = false;
      let key: string | undefined;

      // Settles the intent (its key is forgotten once the outcome is known), then tells the observer.
      const finish = (outcomeKnown: boolean, deliver: () => void) => {
        void Promise.resolve(settleCall(context.idempotency, intents, outcomeKnown)).finally(deliver);
      };

      const attempt = (n: number) => {
        let answered = false;
        let outcomeKnown = true;
        /** Sends the next attempt when the policy allows; returns false when this failure is the end. */
        const retried = (failure: AttemptFailure): boolean => {
          const decision = decideRetry(failure, n, policy, true);
          if (!decision.retry) {
            outcomeKnown = !isRetryable(failure);
            return false;
          }
          options.onRetry?.({ attempt: n, idempotencyKey: key, reason: decision.reason, delayMs: decision.delayMs });
          inner?.unsubscribe();
          timer = setTimeout(() => attempt(n + 1), decision.delayMs);
          return true;
        };
        timer = setTimeout(() => {
          inner?.unsubscribe();
          if (retried({ kind: 'timeout' })) return;
          finish(false, () => observer.error(new Error(`no answer within ${policy.attemptTimeoutMs} ms, ${n} attempts`)));
        }, policy.attemptTimeoutMs);
        inner = forward(operation).subscribe({
          next: (result) => {
            if (!answered) {
              answered = true;
              clearTimeout(timer);
              const failure = failureOfAnswer(result, (operation.getContext() as LinkContext).response);
              if (failure && retried(failure)) return;
            }
            observer.next(result);
          },
          error: (error: unknown) => {
            clearTimeout(timer);
            const failure = answered ? null : failureOfError(error);
            if (failure && retried(failure)) return;
            finish(outcomeKnown, () => observer.error(error));
          },
          complete: () => {
            clearTimeout(timer);
            finish(outcomeKnown, () => observer.complete());
          },
        });
      };

      void Promise.resolve(
        plan.kind === 'header-key' ? (context.idempotencyKey ?? keyForCall(context.idempotency, intents)) : undefined,
      ).then(
        (callKey) => {
          if (closed) return;
          key = callKey;
          if (callKey !== undefined) {
            operation.setContext((previous: LinkContext) => ({
              idempotencyKey: callKey,
              headers: { ...previous.headers, 'Idempotency-Key': callKey },
            }));
          }
          attempt(1);
        },
        (error: unknown) => observer.error(error),
      );

      return () => {
        closed = true;
        clearTimeout(timer);
        inner?.unsubscribe();
      };
    });
  });
}

/** The failure an answer stands for: a 5xx or 429 whatever its body, else its errors' codes; null for a usable answer. */
function failureOfAnswer(result: ApolloLink.Result, response: Response | undefined): AttemptFailure | null {
  const retryAfter = response?.headers.get('retry-after');
  const graphql =
    'errors' in result || 'data' in result ? failureOfResult(result as Parameters<typeof failureOfResult>[0], retryAfter) : null;
  if (response && (response.status >= 500 || response.status === 429)) {
    const hint = graphql?.kind === 'graphql' ? graphql.retryAfterSeconds : parseRetryAfter(retryAfter);
    return { kind: 'http', status: response.status, retryAfterSeconds: hint };
  }
  return graphql;
}

/** The failure an error from HttpLink stands for; null when it is final (e.g. a 4xx without a GraphQL body). */
function failureOfError(error: unknown): AttemptFailure | null {
  if (ServerError.is(error)) {
    return { kind: 'http', status: error.statusCode, retryAfterSeconds: parseRetryAfter(error.response.headers.get('retry-after')) };
  }
  if (ServerParseError.is(error)) return error.statusCode >= 500 ? { kind: 'http', status: error.statusCode } : null;
  // fetch rejects with a TypeError when no answer came: refused, reset, or cut mid-body.
  return { kind: 'network', error };
}
