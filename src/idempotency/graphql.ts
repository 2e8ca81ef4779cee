import type { ApolloServerPlugin } from '@apollo/server';
import type { EntityManager } from '@mikro-orm/postgresql';
import {
  DirectiveLocation,
  GraphQLDirective,
  GraphQLInt,
  type GraphQLResolveInfo,
  Kind,
  responsePathAsArray,
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
  const { ttlSeconds, tombstoneSeconds } = checkWindows('@Idempotent', options);
  const windows = Object.entries({ ttlSeconds, tombstoneSeconds }).flatMap(([name, value]) =>
    value === undefined ? [] : [`${name}: ${value}`],
  );
  const directive = Directive(windows.length > 0 ? `@idempotent(${windows.join(', ')})` : '@idempotent');
  const resources = options.resources as ((payload: unknown) => readonly CreatedResource[]) | undefined;
  const middleware = createMethodMiddlewareDecorator<IdempotencyContext>(async (action, next) => {
    const { args, context, info } = action;
    const state = context.idempotency;
    const { [IDEMPOTENCY_KEY_ARG]: argument, ...fieldArgs } = args;
    const key = keyOf(argument, state, info);
    if (!state.scope) throw new IdempotencyError('UNAUTHENTICATED', 'Authentication required: send Authorization: Bearer <token>');
    try {
      const completed = await state.handler.execute({
        operation: info.fieldName,
        args: fieldArgs,
        scope: state.scope,
        key,
        path: responsePathAsArray(info.path),
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

/** Returns the windows when each given one is whole seconds (the TTL at least 1); throws a RangeError naming `where` otherwise. */
export function checkWindows<T extends { readonly ttlSeconds?: number; readonly tombstoneSeconds?: number }>(where: string, windows: T): T {
  const { ttlSeconds, tombstoneSeconds } = windows;
  if (ttlSeconds !== undefined && !(Number.isInteger(ttlSeconds) && ttlSeconds >= 1)) {
    throw new RangeError(`${where}: ttlSeconds must be a whole number of seconds, at least 1; got ${ttlSeconds}`);
  }
  if (tombstoneSeconds !== undefined && !(Number.isInteger(tombstoneSeconds) && tombstoneSeconds >= 0)) {
    throw new RangeError(`${where}: tombstoneSeconds must be a whole number of seconds; got ${tombstoneSeconds}`);
  }
  return windows;
}

/** Adds `extensions.idempotency` and the `Idempotent-Replayed` header to responses. */
export const idempotencyPlugin = (): ApolloServerPlugin<IdempotencyContext> => ({
  requestDidStart: async () => ({
    async willSendResponse({ contextValue, response }) {
      const markers = contextValue.idempotency?.markers ?? [];
      if (markers.length === 0) return;
      if (response.body.kind === 'single') {
        const result = response.body.singleResult;
        result.extensions = { ...result.extensions, idempotency: [...markers] };
      }
      if (markers.some((marker) => marker.replayed)) response.http.headers.set('idempotent-replayed', 'true');
    },
  }),
});

/** The argument (an explicit null counts as absent), else the header when this is the operation's only idempotent field. */
function keyOf(argument: unknown, { headerKey: header, handler }: IdempotencyRequest, info: GraphQLResolveInfo): string {
  try {
    if (header !== undefined && idempotentFieldCount(info) > 1) {
      throw keyInvalid(
        'The Idempotency-Key header applies to operations with exactly one idempotent mutation; pass an idempotencyKey argument to each field instead',
      );
    }
    if (argument === undefined || argument === null) {
      if (header === undefined) throw keyMissing(info.fieldName);
      return validateKey(header, 'Idempotency-Key header');
    }
    if (header !== undefined && argument !== header) throw keyInvalid('The idempotencyKey argument and the Idempotency-Key header differ');
    return validateKey(argument, 'idempotencyKey argument');
  } catch (error) {
    const missing = (error as IdempotencyError).code === IdempotencyErrorCode.KeyMissing;
    handler.options.observer.outcome(info.fieldName, missing ? ObservedOutcome.MissingKey : ObservedOutcome.InvalidKey);
    throw error;
  }
}

/** How many root fields of the mutation declare the key argument; validation has already refused fragment cycles. */
function idempotentFieldCount(info: GraphQLResolveInfo): number {
  const fields = info.schema.getMutationType()?.getFields() ?? {};
  const keyed = (name: string) => (fields[name]?.args.some((arg) => arg.name === IDEMPOTENCY_KEY_ARG) ? 1 : 0);
  const count = ({ selections }: SelectionSetNode): number =>
    selections.reduce((total, selection) => {
      if (selection.kind === Kind.FIELD) return total + keyed(selection.name.value);
      const fragment = selection.kind === Kind.INLINE_FRAGMENT ? selection : info.fragments[selection.name.value];
      return total + (fragment ? count(fragment.selectionSet) : 0);
    }, 0);
  return info.operation.operation === 'mutation' ? count(info.operation.selectionSet) : 0;
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
class IdempotencyResourceType {
  @Field({ description: 'What it is, e.g. Order.' })
  type!: string;

  @Field(() => ID, { description: 'Its id, e.g. for order(id).' })
  id!: string;
}

@ObjectType('IdempotencyRecord', {
  description: "The stored outcome of the viewer's mutation with a key; after it expires, its tombstone (no payload) until forgottenAt.",
})
class IdempotencyRecordType {
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
    const { scope } = ctx.idempotency;
    const found = scope ? await this.store.find(ctx.em, scope, validateKey(key, 'key')) : null;
    if (!found) return null;
    const { operation, outcome, createdAt, expiresAt, forgottenAt, resources } = found.kind === 'live' ? found.record : found.tombstone;
    return { key, operation, outcome, createdAt, expiresAt, forgottenAt, expired: found.kind === 'expired', resources: [...resources] };
  }
}
