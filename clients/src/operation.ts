/**
 * Which idempotent mutation fields an operation selects, read from its document. Works on any
 * GraphQL AST (graphql-js, @0no-co/graphql.web) without importing a parser.
 */

interface NameNode {
  readonly value: string;
}
interface ArgumentNode {
  readonly name: NameNode;
  readonly value: { readonly kind: string; readonly name?: NameNode; readonly value?: unknown };
}
interface SelectionNode {
  readonly kind: string;
  readonly name?: NameNode;
  readonly arguments?: readonly ArgumentNode[];
  readonly selectionSet?: { readonly selections: readonly SelectionNode[] };
}
interface DefinitionNode {
  readonly kind: string;
  readonly operation?: string;
  readonly name?: NameNode;
  readonly selectionSet?: { readonly selections: readonly SelectionNode[] };
}
/** The part of a GraphQL document this module reads. */
export interface DocumentLike {
  readonly definitions: readonly DefinitionNode[];
}

/** The name of the key argument of every idempotent mutation field. */
export const KEY_ARGUMENT = 'idempotencyKey';

/** How an operation is sent, as far as keys and retries go. */
export type OperationPlan =
  /** A query (or anything that writes nothing): safe to send again. */
  | { readonly kind: 'read' }
  /** One idempotent field without its argument: the key goes in the Idempotency-Key header. */
  | { readonly kind: 'header-key'; readonly field: string }
  /** Every idempotent field has its key argument with a value: the caller manages the keys. */
  | { readonly kind: 'argument-keys' }
  /** A mutation with no key to send: sent once, never again. */
  | { readonly kind: 'keyless'; readonly reason: string };

/**
 * Plans the operation `operationName` (or the document's only one). `idempotentFields` are the
 * Mutation fields that take a key (see `idempotentMutationsFromSchema`).
 */
export function planOperation(
  document: DocumentLike,
  operationName: string | null | undefined,
  variables: Readonly<Record<string, unknown>> | undefined,
  idempotentFields: ReadonlySet<string>,
): OperationPlan {
  const operations = document.definitions.filter((definition) => definition.kind === 'OperationDefinition');
  const operation = operationName ? operations.find((definition) => definition.name?.value === operationName) : operations[0];
  if (!operation || operation.operation !== 'mutation') return { kind: 'read' };
  const fragments = new Map(
    document.definitions
      .filter((definition) => definition.kind === 'FragmentDefinition' && definition.name)
      .map((definition) => [definition.name!.value, definition] as const),
  );
  const fields = topLevelFields(operation.selectionSet?.selections ?? [], fragments, new Set());
  const unknown = fields.filter((field) => !idempotentFields.has(field.name?.value ?? ''));
  if (unknown.length > 0) {
    return { kind: 'keyless', reason: `${unknown.map((field) => field.name?.value).join(', ')} takes no idempotency key` };
  }
  const withoutKey = fields.filter((field) => !hasKeyValue(field, variables ?? {}));
  if (withoutKey.length === 0) return { kind: 'argument-keys' };
  if (fields.length === 1) return { kind: 'header-key', field: fields[0]!.name!.value };
  return { kind: 'keyless', reason: 'several idempotent fields in one operation need each its own idempotencyKey argument' };
}

/** The fields of the root selection, fragments spread in place. */
function topLevelFields(
  selections: readonly SelectionNode[],
  fragments: ReadonlyMap<string, DefinitionNode>,
  seen: Set<string>,
): SelectionNode[] {
  return selections.flatMap((selection) => {
    if (selection.kind === 'Field') return selection.name?.value === '__typename' ? [] : [selection];
    if (selection.kind === 'InlineFragment') return topLevelFields(selection.selectionSet?.selections ?? [], fragments, seen);
    const name = selection.name?.value ?? '';
    if (selection.kind !== 'FragmentSpread' || seen.has(name)) return [];
    seen.add(name);
    return topLevelFields(fragments.get(name)?.selectionSet?.selections ?? [], fragments, seen);
  });
}

/** True when the field passes a non-null key: a literal, or a variable holding a value. */
function hasKeyValue(field: SelectionNode, variables: Readonly<Record<string, unknown>>): boolean {
  const argument = field.arguments?.find((candidate) => candidate.name.value === KEY_ARGUMENT);
  if (!argument) return false;
  if (argument.value.kind === 'NullValue') return false;
  if (argument.value.kind !== 'Variable') return true;
  const value = variables[argument.value.name?.value ?? ''];
  return value !== null && value !== undefined;
}

/** A schema document (SDL) as far as this module reads it. */
interface SchemaDefinitionNode {
  readonly kind: string;
  readonly name?: NameNode;
  readonly fields?: readonly {
    readonly name: NameNode;
    readonly arguments?: readonly { readonly name: NameNode }[];
    readonly directives?: readonly { readonly name: NameNode }[];
  }[];
  readonly operationTypes?: readonly { readonly operation: string; readonly type: { readonly name: NameNode } }[];
}

/**
 * The Mutation fields that are idempotent, from a parsed SDL: those with an `idempotencyKey`
 * argument or an `@idempotent` directive.
 */
export function idempotentMutationsFromSchema(schema: { readonly definitions: readonly SchemaDefinitionNode[] }): string[] {
  const rootName =
    schema.definitions
      .flatMap((definition) => (definition.kind === 'SchemaDefinition' ? (definition.operationTypes ?? []) : []))
      .find((type) => type.operation === 'mutation')?.type.name.value ?? 'Mutation';
  return schema.definitions
    .filter(
      (definition) =>
        (definition.kind === 'ObjectTypeDefinition' || definition.kind === 'ObjectTypeExtension') && definition.name?.value === rootName,
    )
    .flatMap((definition) => definition.fields ?? [])
    .filter(
      (field) =>
        field.arguments?.some((argument) => argument.name.value === KEY_ARGUMENT) ||
        field.directives?.some((directive) => directive.name.value === 'idempotent'),
    )
    .map((field) => field.name.value)
    .sort();
}
