import type { ApolloServerPlugin } from '@apollo/server';
import { ApolloServerErrorCode } from '@apollo/server/errors';
import { type DocumentNode, GraphQLError, Kind, visit } from 'graphql';

const NUL = '\u0000';

/**
 * Refuses, before anything executes, an operation whose string literals or variables hold
 * U+0000 anywhere (nested inputs and lists included): PostgreSQL cannot store the character
 * and would answer with a protocol error. The answer is BAD_USER_INPUT, which is not retryable.
 */
export function nulInputPlugin(): ApolloServerPlugin {
  return {
    async requestDidStart() {
      return {
        async didResolveOperation({ document, request }) {
          if (holdsNul(request.variables) || literalHoldsNul(document)) {
            throw new GraphQLError('Strings must not contain the character U+0000', {
              extensions: { code: ApolloServerErrorCode.BAD_USER_INPUT, http: { status: 400 } },
            });
          }
        },
      };
    },
  };
}

function holdsNul(value: unknown): boolean {
  if (typeof value === 'string') return value.includes(NUL);
  if (Array.isArray(value)) return value.some(holdsNul);
  if (value !== null && typeof value === 'object') {
    return Object.entries(value).some(([name, field]) => name.includes(NUL) || holdsNul(field));
  }
  return false;
}

// Apollo hands the same parsed document to every request with the same query text, so each
// document's literals are searched once.
const searched = new WeakMap<DocumentNode, boolean>();

function literalHoldsNul(document: DocumentNode): boolean {
  let found = searched.get(document);
  if (found !== undefined) return found;
  found = searchLiterals(document);
  searched.set(document, found);
  return found;
}

function searchLiterals(document: DocumentNode): boolean {
  let found = false;
  visit(document, {
    [Kind.STRING]: (node) => {
      if (node.value.includes(NUL)) found = true;
    },
  });
  return found;
}
