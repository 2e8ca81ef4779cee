import type { ApolloServerPlugin } from '@apollo/server';
import { ApolloArmor } from '@escape.tech/graphql-armor';
import { GraphQLError, Kind, type SelectionSetNode, type ValidationContext, type ValidationRule } from 'graphql';

/** Limits on the shape of an operation; every value is documented in docs/operations.md. */
export const QUERY_LIMITS = {
  /** Deepest field nesting (introspection excepted). */
  maxDepth: 10,
  /** Static cost: 2 per object field, 1 per scalar, growing with depth (graphql-armor's model). */
  maxCost: 5000,
  /** Aliases per operation: 20 aliased createOrder fields are rejected. */
  maxAliases: 10,
  /** Lexical tokens per document. */
  maxTokens: 2000,
  /** Directives per operation. */
  maxDirectives: 20,
  /** Root fields of a mutation operation: each one is a separately executed, recorded write. */
  maxMutationFields: 5,
} as const;

/** graphql-armor's protections plus the mutation field limit, as Apollo plugins and validation rules. */
export function queryLimits(production: boolean): {
  plugins: ApolloServerPlugin[];
  validationRules: ValidationRule[];
  parseOptions: { maxTokens: number };
} {
  const armor = new ApolloArmor({
    maxDepth: { n: QUERY_LIMITS.maxDepth, ignoreIntrospection: true },
    costLimit: { maxCost: QUERY_LIMITS.maxCost, ignoreIntrospection: true },
    maxAliases: { n: QUERY_LIMITS.maxAliases },
    // graphql-js enforces the token limit while parsing (see parseOptions), so an oversized
    // document is a parse failure like any other; armor's extra parse pass would relabel it.
    maxTokens: { enabled: false },
    maxDirectives: { n: QUERY_LIMITS.maxDirectives },
    // Suggestions ("Did you mean ...?") reveal the schema when introspection is off.
    blockFieldSuggestion: { enabled: production },
  }).protect();
  return {
    plugins: armor.plugins,
    validationRules: [...armor.validationRules, maxMutationFields(QUERY_LIMITS.maxMutationFields)],
    parseOptions: { maxTokens: QUERY_LIMITS.maxTokens },
  };
}

function maxMutationFields(limit: number): ValidationRule {
  return (context: ValidationContext) => ({
    OperationDefinition(node) {
      if (node.operation !== 'mutation') return;
      const fields = rootFieldCount(context, node.selectionSet, new Set());
      if (fields > limit) {
        context.reportError(new GraphQLError(`Mutation field limit of ${limit} exceeded, found ${fields}.`, { nodes: node }));
      }
    },
  });
}

/** Root fields of a selection set, counted through inline fragments and fragment spreads. */
function rootFieldCount(context: ValidationContext, selectionSet: SelectionSetNode, seen: Set<string>): number {
  let count = 0;
  for (const selection of selectionSet.selections) {
    if (selection.kind === Kind.FIELD) count += 1;
    else if (selection.kind === Kind.INLINE_FRAGMENT) count += rootFieldCount(context, selection.selectionSet, seen);
    else if (!seen.has(selection.name.value)) {
      const fragment = context.getFragment(selection.name.value);
      if (fragment) count += rootFieldCount(context, fragment.selectionSet, new Set([...seen, selection.name.value]));
    }
  }
  return count;
}
