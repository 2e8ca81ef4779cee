import { type ApolloServerPlugin, HeaderMap } from '@apollo/server';
import type { FormattedExecutionResult } from 'graphql';
import type { IdempotencyContext, IdempotencyRequest } from './idempotency.context';

/** Header set when any field of the response was replayed from a stored outcome. */
export const REPLAYED_HEADER = 'idempotent-replayed';

/** Requests whose variables are longer than this (as JSON) get no remembered response. */
const MAX_VARIABLES_CHARS = 4_096;
/** Nor do responses whose data is longer than this (as JSON). */
const MAX_DATA_CHARS = 16_384;

/**
 * Adds `extensions.idempotency` and the `Idempotent-Replayed` header to responses (rule I6).
 *
 * It also answers a request that repeats an earlier fully replayed request exactly (same caller
 * and grants, document, operation name, variables and header key) with that earlier response,
 * without executing it again: every root field of such a response came from a stored outcome,
 * which never changes before it expires (I5), so executing again would give the same data.
 */
export function idempotencyResponsePlugin<C extends IdempotencyContext>(): ApolloServerPlugin<C> {
  return {
    async requestDidStart() {
      let slot: string | undefined;
      let reused = false;
      return {
        async responseForOperation({ contextValue, operation, queryHash, request }) {
          const state = contextValue.idempotency;
          if (!state?.scope || operation.operation !== 'mutation' || queryHash === undefined) return null;
          slot = responseSlot(state, queryHash, request.operationName, request.variables);
          const remembered = slot === undefined ? undefined : state.handler.replayedResponse(slot);
          if (!remembered) return null;
          reused = true;
          state.markers.push(...remembered.markers);
          return {
            http: { status: undefined, headers: new HeaderMap() },
            body: { kind: 'single', singleResult: { data: remembered.data } },
          };
        },
        async willSendResponse({ contextValue, response }) {
          const state = contextValue.idempotency;
          if (!state || state.markers.length === 0) return;
          if (response.body.kind === 'single') {
            const result = response.body.singleResult;
            if (slot !== undefined && !reused) remember(state, slot, result);
            result.extensions = { ...result.extensions, idempotency: [...state.markers] };
          }
          if (state.replayed) response.http.headers.set(REPLAYED_HEADER, 'true');
        },
      };
    },
  };
}

/** Where the response of this exact request is remembered; undefined when it is not worth it. */
function responseSlot(state: IdempotencyRequest, queryHash: string, operationName: string | undefined, variables: unknown) {
  const json = JSON.stringify(variables ?? {});
  if (json.length > MAX_VARIABLES_CHARS) return undefined;
  return [state.scope, state.grants, state.headerKey ?? '\u0001', queryHash, operationName ?? '', json].join('\u0000');
}

/** Keeps the response when every root field of it was replayed without error. */
function remember(state: IdempotencyRequest, slot: string, result: FormattedExecutionResult): void {
  const { markers, fields } = state;
  if (result.errors || !result.data || !markers.every((marker) => marker.replayed)) return;
  const responseKeys = Object.keys(result.data);
  const replayedKeys = new Set(markers.map((marker) => (marker.path.length === 1 ? marker.path[0] : undefined)));
  if (responseKeys.length !== markers.length || !responseKeys.every((key) => replayedKeys.has(key))) return;
  const json = JSON.stringify(result.data);
  if (json.length > MAX_DATA_CHARS) return;
  state.handler.rememberResponse(slot, {
    data: JSON.parse(json) as Record<string, unknown>,
    markers: [...markers],
    operations: [...fields],
    expiresAt: new Date(Math.min(...markers.map((marker) => Date.parse(marker.expiresAt)))),
  });
}
