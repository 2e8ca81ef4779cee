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
import {
  Arg,
  Ctx,
  createMethodMiddlewareDecorator,
  Directive,
  Field,
  ID,
  ObjectType,
  Query,
  Resolver,
  registerEnumType,
} from 'type-graphql';
import { IdempotencyError, IdempotencyErrorCode, type IdempotencyMarker, keyInvalid, keyMissing } from './errors';
import type { IdempotencyHandler } from './handler';
import { IDEMPOTENCY_KEY_ARG, IdempotencyKeyScalar, validateKey } from './key';
import { ObservedOutcome } from './observer';
import { PostgresRecordStore } from './postgres.store';
import { type CreatedResource, Outcome } from './store';

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
    'The mutation executes once per idempotency key; a retry with the same key gets the first outcome until it expires, then IDEMPOTENCY_KEY_EXPIRED until its tombstone ends; only then is the key unused again. Absent arguments: the server-wide settings (IDEMPOTENCY_TTL_SECONDS, 86400 by default; IDEMPOTENCY_TOMBSTONE_SECONDS, 2592000 by default).',
  locations: [DirectiveLocation.FIELD_DEFINITION],
  args: {
    ttlSeconds: { type: GraphQLInt, description: 'How long this mutation keeps its outcomes.' },
    tombstoneSeconds: {
      type: GraphQLInt,
      description: 'How long a tombstone (no payload) answers a late retry after the outcome expires; 0: none.',
    },
  },
});

/** Per-mutation options of {@link Idempotent}; absent ones take the engine's settings. */
export interface IdempotentOptions<Payload> {
  /** How long outcomes are kept and replayed: a whole number of seconds, at least 1. */
  readonly ttlSeconds?: number;
  /** How long a tombstone answers late retries after an outcome expires: whole seconds; 0 turns tombstones off. */
  readonly tombstoneSeconds?: number;
  /** The resources a payload created (e.g. `[{ type: 'Order', id: payload.order.id }]`), named in IDEMPOTENCY_KEY_EXPIRED. */
  readonly resources?: (payload: Payload) => readonly CreatedResource[];
}

/**
 * Makes a mutation idempotent. It declares its key with `@IdempotencyKeyArg()`, writes only
 * through `ctx.em` (the engine's transaction), and returns plain data describing its whole
 * payload: that data is what replays return.
 */
export function Idempotent<Payload = never>(options: IdempotentOptions<Payload> = {}): MethodDecorator {
  const { ttlSeconds, tombstoneSeconds } = options;
  if (ttlSeconds !== undefined && !(Number.isInteger(ttlSeconds) && ttlSeconds >= 1)) {
    throw new RangeError(`@Idempotent: ttlSeconds must be a whole number of seconds, at least 1; got ${ttlSeconds}`);
  }
  if (tombstoneSeconds !== undefined && !(Number.isInteger(tombstoneSeconds) && tombstoneSeconds >= 0)) {
    throw new RangeError(`@Idempotent: tombstoneSeconds must be a whole number of seconds; got ${tombstoneSeconds}`);
  }
  const args = [
    ttlSeconds === undefined ? '' : `ttlSeconds: ${ttlSeconds}`,
    tombstoneSeconds === undefined ? '' : `tombstoneSeconds: ${tombstoneSeconds}`,
  ].filter((arg) => arg !== '');
  const directive = Directive(args.length > 0 ? `@idempotent(${args.join(', ')})` : '@idempotent');
  const resources = options.resources as ((payload: unknown) => readonly CreatedResource[]) | undefined;
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
        ttlSeconds,
        tombstoneSeconds,
        resources,
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

@ObjectType('IdempotencyResource', { description: 'A resource the first execution with a key created.' })
export class IdempotencyResourceType {
  @Field({ description: 'What it is, e.g. Order.' })
  type!: string;

  @Field(() => ID, { description: 'Its id, e.g. for order(id).' })
  id!: string;
}

@ObjectType('IdempotencyRecord', {
  description: "The stored outcome of the viewer's mutation with a key; after it expires, its tombstone (no payload) until forgottenAt.",
})
export class IdempotencyRecordType {
  @Field(() => IdempotencyKeyScalar, { description: 'The key.' })
  key!: string;

  @Field({ description: 'The mutation field the key was used with, e.g. createOrder.' })
  operation!: string;

  @Field(() => IdempotencyOutcomeValue, { description: 'SUCCEEDED or FAILED.' })
  outcome!: string;

  @Field(() => Date, { description: 'When the first execution committed.' })
  createdAt!: Date;

  @Field(() => Date, { description: 'When the outcome expires: retries replay it until then, and get IDEMPOTENCY_KEY_EXPIRED after.' })
  expiresAt!: Date;

  @Field(() => Date, {
    description:
      'When the tombstone ends and the key becomes unused again: the tombstone window (IDEMPOTENCY_TOMBSTONE_SECONDS unless the mutation sets its own) after expiresAt; expiresAt without a tombstone.',
  })
  forgottenAt!: Date;

  @Field({ description: 'True once the outcome expired: only the tombstone remains, and a retry gets IDEMPOTENCY_KEY_EXPIRED.' })
  expired!: boolean;

  @Field(() => [IdempotencyResourceType], { description: 'What the first execution created, when the mutation names it.' })
  resources!: IdempotencyResourceType[];
}

@Resolver()
export class IdempotencyRecordResolver {
  private readonly store = new PostgresRecordStore();

  @Query(() => IdempotencyRecordType, {
    nullable: true,
    description: "The viewer's record or tombstone for a key, or null once the key is unused again.",
  })
  async idempotencyRecord(
    @Ctx() ctx: IdempotencyContext,
    @Arg('key', () => IdempotencyKeyScalar, { description: 'The idempotency key.' }) key: string,
  ): Promise<IdempotencyRecordType | null> {
    const scope = ctx.idempotency.scope;
    if (!scope) return null;
    const found = await this.store.find(ctx.em, scope, validateKey(key, 'key'));
    if (!found) return null;
    const record = found.kind === 'live' ? found.record : found.tombstone;
    const { operation, outcome, createdAt, expiresAt, forgottenAt, resources } = record;
    return { key, operation, outcome, createdAt, expiresAt, forgottenAt, expired: found.kind === 'expired', resources: [...resources] };
  }
}
