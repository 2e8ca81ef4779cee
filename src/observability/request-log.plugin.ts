import type { ApolloServerPlugin } from '@apollo/server';
import type { Context } from '../graphql/context';
import type { Metrics } from './metrics';

/**
 * One log line and one duration sample per GraphQL request: user, operation, idempotency
 * outcome, error codes and duration. Never the variables, the token or a payload.
 */
export function requestLogPlugin(metrics: Metrics): ApolloServerPlugin<Context> {
  return {
    async requestDidStart({ request }) {
      const started = performance.now();
      return {
        async willSendResponse({ contextValue, response, operationName, errors }) {
          const seconds = (performance.now() - started) / 1000;
          const name = operationName ?? request.operationName ?? null;
          const result = errors && errors.length > 0 ? 'error' : 'success';
          metrics.graphqlDuration.observe({ operation_name: metrics.operationLabel(name), result }, seconds);
          const markers = contextValue?.idempotency?.markers ?? [];
          const codes =
            response.body.kind === 'single' ? response.body.singleResult.errors?.map((error) => error.extensions?.code) : undefined;
          contextValue?.log?.info(
            {
              userId: contextValue.viewer?.id,
              operationName: name,
              idempotency: markers.map((marker) => ({ key: marker.key, replayed: marker.replayed })),
              errorCodes: codes,
              durationMs: Math.round(seconds * 1000),
            },
            'graphql request',
          );
        },
      };
    },
  };
}
