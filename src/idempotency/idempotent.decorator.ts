import type { EntityManager } from '@mikro-orm/postgresql';
import { type FieldNode, type GraphQLResolveInfo, Kind, type OperationDefinitionNode, type SelectionSetNode } from 'graphql';
import { createMethodMiddlewareDecorator, type MiddlewareFn } from 'type-graphql';
import { UnauthenticatedError } from '../errors';
import type { IdempotencyContext } from './idempotency.context';
import { IdempotencyKeyInvalidError, IdempotencyKeyMissingError } from './idempotency.errors';
import { IdempotentFailure } from './idempotency.handler';
import { ObservedOutcome } from './idempotency.observer';
import { validateKey } from './key';

/** Name of the key argument every idempotent mutation declares. */
export const IDEMPOTENCY_KEY_ARG = 'idempotencyKey';

/** Description of the key argument, shared by every idempotent mutation. */
export const IDEMPOTENCY_KEY_DESCRIPTION =
  'Makes the mutation idempotent: a retry with the same key returns the first outcome. Defaults to the Idempotency-Key header.';

/** Per-mutation options of {@link Idempotent}. */
export interface IdempotentOptions {
  /** How long this mutation's outcomes are kept and replayed; default: the engine's TTL. */
  readonly ttlSeconds?: number;
}

/**
 * Makes a mutation idempotent. The mutation declares an `idempotencyKey: IdempotencyKey`
 * argument, uses `ctx.em` (the handler's transaction) for every write, and returns plain data
 * describing its whole payload: that data is what replays return.
 */
export function Idempotent(options: IdempotentOptions = {}): MethodDecorator {
  const middleware: MiddlewareFn<IdempotencyContext> = async (action, next) => {
    const { args, context, info } = action;
    const state = context.idempotency;
    let key: string;
    try {
      key = resolveKey(args[IDEMPOTENCY_KEY_ARG], state.headerKey, info);
    } catch (error) {
      const outcome = error instanceof IdempotencyKeyMissingError ? ObservedOutcome.MissingKey : ObservedOutcome.InvalidKey;
      state.handler.observer.outcome(info.fieldName, outcome);
      throw error;
    }
    if (!state.scope) throw new UnauthenticatedError();
    const { [IDEMPOTENCY_KEY_ARG]: _key, ...fieldArgs } = args;
    try {
      const completed = await state.handler.execute({
        operation: info.fieldName,
        args: fieldArgs,
        scope: state.scope,
        key,
        path: responsePath(info),
        em: context.em,
        ttlSeconds: options.ttlSeconds,
        run: (em: EntityManager) => {
          // Parameters are resolved after the middleware, so the mutation sees the transaction.
          action.context = { ...context, em };
          return next();
        },
      });
      state.mark(info.fieldName, completed.marker);
      return completed.value;
    } catch (error) {
      if (error instanceof IdempotentFailure) state.mark(info.fieldName, error.marker);
      throw error;
    }
  };
  return createMethodMiddlewareDecorator(middleware);
}

/** Rule I1: the argument, else the header when this is the operation's only idempotent field. */
function resolveKey(argument: unknown, header: string | undefined, info: GraphQLResolveInfo): string {
  const fromArgument = argument !== undefined && argument !== null;
  if (header !== undefined && idempotentFieldCount(info) > 1) {
    throw new IdempotencyKeyInvalidError(
      'The Idempotency-Key header applies to operations with exactly one idempotent mutation; pass an idempotencyKey argument to each field instead',
    );
  }
  if (fromArgument && header !== undefined && argument !== header) {
    throw new IdempotencyKeyInvalidError('The idempotencyKey argument and the Idempotency-Key header differ');
  }
  if (fromArgument) return validateKey(argument, 'idempotencyKey argument');
  if (header !== undefined) return validateKey(header, 'Idempotency-Key header');
  throw new IdempotencyKeyMissingError(info.fieldName);
}

const fieldCounts = new WeakMap<OperationDefinitionNode, number>();

/** How many root fields of the operation are idempotent mutations (fields with a key argument). */
function idempotentFieldCount(info: GraphQLResolveInfo): number {
  const known = fieldCounts.get(info.operation);
  if (known !== undefined) return known;
  const mutationFields = info.schema.getMutationType()?.getFields() ?? {};
  const isIdempotent = (node: FieldNode) => mutationFields[node.name.value]?.args.some((arg) => arg.name === IDEMPOTENCY_KEY_ARG) ?? false;
  const count = (selectionSet: SelectionSetNode, seen: Set<string>): number =>
    selectionSet.selections.reduce((total, selection) => {
      switch (selection.kind) {
        case Kind.FIELD:
          return total + (isIdempotent(selection) ? 1 : 0);
        case Kind.INLINE_FRAGMENT:
          return total + count(selection.selectionSet, seen);
        case Kind.FRAGMENT_SPREAD: {
          const fragment = info.fragments[selection.name.value];
          if (!fragment || seen.has(fragment.name.value)) return total;
          return total + count(fragment.selectionSet, new Set([...seen, fragment.name.value]));
        }
        default:
          return total;
      }
    }, 0);
  const result = info.operation.operation === 'mutation' ? count(info.operation.selectionSet, new Set()) : 0;
  fieldCounts.set(info.operation, result);
  return result;
}

function responsePath(info: GraphQLResolveInfo): (string | number)[] {
  const path: (string | number)[] = [];
  for (let node: GraphQLResolveInfo['path'] | undefined = info.path; node; node = node.prev) path.unshift(node.key);
  return path;
}
