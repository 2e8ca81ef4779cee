import type { ApolloServerPlugin } from '@apollo/server';
import type { EntityManager } from '@mikro-orm/postgresql';
import {
  DirectiveLocation,
  type FieldNode,
  GraphQLDirective,
  GraphQLInt,
  type GraphQLResolveInfo,
  Kind,
  type OperationDefinitionNode,
  type SelectionSetNode,
} from 'graphql';
import { Arg, Ctx, createMethodMiddlewareDecorator, Directive, Field, ObjectType, Query, Resolver, registerEnumType } from 'type-graphql';
import { IdempotencyError, IdempotencyErrorCode, type IdempotencyMarker, keyInvalid, keyMissing } from './errors';
import type { IdempotencyHandler } from './handler';
import { IDEMPOTENCY_KEY_ARG, IdempotencyKeyScalar, validateKey } from './key';
import { ObservedOutcome } from './observer';
import { PostgresRecordStore } from './postgres.store';
import { Outcome } from './store';

/** Header set when any field of the response was replayed from a stored outcome. */
const REPLAYED_HEADER = 'idempotent-replayed';

/** Idempotency state of one request: the engine, who is asking, the header and the markers. */
export class IdempotencyRequest {
  readonly markers: IdempotencyMarker[] = [];

  constructor(
    readonly handler: IdempotencyHandler<EntityManager>,
    /** The user the records belong to; null when anonymous. */
    readonly scope: string | null,
    /** The raw `Idempotency-Key` header, undefined when absent. */
    readonly headerKey: string | undefined,
  ) {}
}

/** What the engine needs from the GraphQL context. */
export interface IdempotencyContext {
  readonly em: EntityManager;
  readonly idempotency: IdempotencyRequest;
}

/** `@idempotent` on a mutation field: clients and codegen can see which mutations replay, and for how long. */
export const idempotentDirective = new GraphQLDirective({
  name: 'idempotent',
  description:
    'The mutation executes once per idempotency key; a retry with the same key gets the first outcome until it expires. ttlSeconds absent: the server-wide retention (IDEMPOTENCY_TTL_SECONDS, 86400 by default).',
  locations: [DirectiveLocation.FIELD_DEFINITION],
  args: { ttlSeconds: { type: GraphQLInt, description: 'How long this mutation keeps its outcomes.' } },
});

/**
 * Makes a mutation idempotent. It declares its key with `@IdempotencyKeyArg()`, writes only
 * through `ctx.em` (the engine's transaction), and returns plain data describing its whole
 * payload: that data is what replays return.
 */
export function Idempotent(options: { readonly ttlSeconds?: number } = {}): MethodDecorator {
  const directive = Directive(options.ttlSeconds ? `@idempotent(ttlSeconds: ${options.ttlSeconds})` : '@idempotent');
  const middleware = createMethodMiddlewareDecorator<IdempotencyContext>(async (action, next) => {
    const { args, context, info } = action;
    const state = context.idempotency;
    const key = keyOf(args[IDEMPOTENCY_KEY_ARG], state, info);
    if (!state.scope) throw new IdempotencyError('UNAUTHENTICATED', 'Authentication required: send Authorization: Bearer <token>');
    const { [IDEMPOTENCY_KEY_ARG]: _key, ...fieldArgs } = args;
    try {
      const completed = await state.handler.execute({
        operation: info.fieldName,
        args: fieldArgs,
        scope: state.scope,
        key,
        path: responsePath(info),
        db: context.em,
        ttlSeconds: options.ttlSeconds,
        // Parameters resolve after the middleware, so the mutation's @Ctx() sees the transaction.
        run: (tx) => {
          action.context = { ...context, em: tx };
          return next();
        },
      });
      state.markers.push(completed.marker);
      return completed.value;
    } catch (error) {
      if (error instanceof IdempotencyError && error.marker) state.markers.push(error.marker);
      throw error;
    }
  });
  return (target, property, descriptor) => {
    directive(target, property, descriptor);
    middleware(target, property, descriptor);
  };
}

/** Adds `extensions.idempotency` and the `Idempotent-Replayed` header to responses. */
export function idempotencyPlugin<C extends IdempotencyContext>(): ApolloServerPlugin<C> {
  return {
    async requestDidStart() {
      return {
        async willSendResponse({ contextValue, response }) {
          const markers = contextValue.idempotency?.markers ?? [];
          if (markers.length === 0) return;
          if (response.body.kind === 'single') {
            const result = response.body.singleResult;
            result.extensions = { ...result.extensions, idempotency: [...markers] };
          }
          if (markers.some((marker) => marker.replayed)) response.http.headers.set(REPLAYED_HEADER, 'true');
        },
      };
    },
  };
}

/** The argument, else the header when this is the operation's only idempotent field. */
function keyOf(argument: unknown, state: IdempotencyRequest, info: GraphQLResolveInfo): string {
  try {
    const header = state.headerKey;
    const fromArgument = argument !== undefined && argument !== null;
    if (header !== undefined && idempotentFieldCount(info) > 1) {
      throw keyInvalid(
        'The Idempotency-Key header applies to operations with exactly one idempotent mutation; pass an idempotencyKey argument to each field instead',
      );
    }
    if (fromArgument && header !== undefined && argument !== header) {
      throw keyInvalid('The idempotencyKey argument and the Idempotency-Key header differ');
    }
    if (fromArgument) return validateKey(argument, 'idempotencyKey argument');
    if (header !== undefined) return validateKey(header, 'Idempotency-Key header');
    throw keyMissing(info.fieldName);
  } catch (error) {
    const missing = error instanceof IdempotencyError && error.code === IdempotencyErrorCode.KeyMissing;
    state.handler.observer.outcome(info.fieldName, missing ? ObservedOutcome.MissingKey : ObservedOutcome.InvalidKey);
    throw error;
  }
}

const fieldCounts = new WeakMap<OperationDefinitionNode, number>();

/** How many root fields of the operation are idempotent mutations (fields with a key argument). */
function idempotentFieldCount(info: GraphQLResolveInfo): number {
  const known = fieldCounts.get(info.operation);
  if (known !== undefined) return known;
  const mutationFields = info.schema.getMutationType()?.getFields() ?? {};
  const isIdempotent = (node: FieldNode) => mutationFields[node.name.value]?.args.some((arg) => arg.name === IDEMPOTENCY_KEY_ARG) ?? false;
  const count = (selectionSet: SelectionSetNode, seen: ReadonlySet<string>): number =>
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

const IdempotencyOutcomeValue = { SUCCEEDED: Outcome.Succeeded, FAILED: Outcome.Failed } as const;
registerEnumType(IdempotencyOutcomeValue, {
  name: 'IdempotencyOutcome',
  description: 'How the first execution with a key ended.',
  valuesConfig: {
    SUCCEEDED: { description: 'The mutation committed; replays return its payload.' },
    FAILED: { description: 'The mutation failed with a domain error; replays return that error.' },
  },
});

@ObjectType('IdempotencyRecord', { description: "The stored outcome of the viewer's mutation with a key." })
export class IdempotencyRecordType {
  @Field(() => IdempotencyKeyScalar, { description: 'The key.' })
  key!: string;

  @Field({ description: 'The mutation field the key was used with, e.g. createOrder.' })
  operation!: string;

  @Field(() => IdempotencyOutcomeValue, { description: 'SUCCEEDED or FAILED.' })
  outcome!: string;

  @Field(() => Date, { description: 'When the first execution committed.' })
  createdAt!: Date;

  @Field(() => Date, { description: 'When the record expires and the key becomes unused again.' })
  expiresAt!: Date;
}

@Resolver()
export class IdempotencyRecordResolver {
  private readonly store = new PostgresRecordStore();

  @Query(() => IdempotencyRecordType, { nullable: true, description: "The viewer's live record for a key, or null." })
  async idempotencyRecord(
    @Ctx() ctx: IdempotencyContext,
    @Arg('key', () => IdempotencyKeyScalar, { description: 'The idempotency key.' }) key: string,
  ): Promise<IdempotencyRecordType | null> {
    const scope = ctx.idempotency.scope;
    if (!scope) return null;
    const record = await this.store.find(ctx.em, scope, validateKey(key, 'key'));
    return (
      record && { key, operation: record.operation, outcome: record.outcome, createdAt: record.createdAt, expiresAt: record.expiresAt }
    );
  }
}
