import type { ApolloServerPlugin } from '@apollo/server';
import { type DocumentNode, Kind, type OperationDefinitionNode, type SelectionSetNode } from 'graphql';
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
        async willSendResponse({ contextValue, response, operationName, errors, operation, document }) {
          const seconds = (performance.now() - started) / 1000;
          const name = operationName ?? request.operationName ?? null;
          const result = errors && errors.length > 0 ? 'error' : 'success';
          metrics.graphqlDuration.observe({ operation: operationLabel(operation, document), result }, seconds);
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

/**
 * The metric label of a request: the operation's root field as the schema names it
 * (`mutation.createOrder`), never the client's operation name, which may say anything about
 * anyone and is unbounded. Several root fields are `<type>.multiple`, introspection alone is
 * `introspection`, and a request that resolved no operation (parse or validation failure,
 * unknown operation name) is `unresolved`: a set of values the schema bounds.
 */
export function operationLabel(operation: OperationDefinitionNode | undefined, document: DocumentNode | undefined): string {
  if (!operation || !document) return 'unresolved';
  const fields = new Set<string>();
  collectRootFields(operation.selectionSet, document, fields, new Set());
  const named = [...fields].filter((field) => !field.startsWith('__'));
  if (named.length === 0) return 'introspection';
  return named.length === 1 ? `${operation.operation}.${named[0]}` : `${operation.operation}.multiple`;
}

function collectRootFields(selectionSet: SelectionSetNode, document: DocumentNode, fields: Set<string>, seen: Set<string>): void {
  for (const selection of selectionSet.selections) {
    if (selection.kind === Kind.FIELD) fields.add(selection.name.value);
    else if (selection.kind === Kind.INLINE_FRAGMENT) collectRootFields(selection.selectionSet, document, fields, seen);
    else if (!seen.has(selection.name.value)) {
      seen.add(selection.name.value);
      const fragment = document.definitions.find(
        (definition) => definition.kind === Kind.FRAGMENT_DEFINITION && definition.name.value === selection.name.value,
      );
      if (fragment?.kind === Kind.FRAGMENT_DEFINITION) collectRootFields(fragment.selectionSet, document, fields, seen);
    }
  }
}
