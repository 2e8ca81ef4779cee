import type { ApolloServerPlugin } from '@apollo/server';
import type { IdempotencyContext } from './idempotency.context';

/** Header set when any field of the response was replayed from a stored outcome. */
export const REPLAYED_HEADER = 'idempotent-replayed';

/** Adds `extensions.idempotency` and the `Idempotent-Replayed` header to responses (rule I6). */
export function idempotencyResponsePlugin<C extends IdempotencyContext>(): ApolloServerPlugin<C> {
  return {
    async requestDidStart() {
      return {
        async willSendResponse({ contextValue, response }) {
          const state = contextValue.idempotency;
          if (!state || state.markers.length === 0) return;
          if (response.body.kind === 'single') {
            const result = response.body.singleResult;
            result.extensions = { ...result.extensions, idempotency: [...state.markers] };
          }
          if (state.replayed) response.http.headers.set(REPLAYED_HEADER, 'true');
        },
      };
    },
  };
}
