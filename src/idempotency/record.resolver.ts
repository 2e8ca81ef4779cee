import { Arg, Ctx, Field, ObjectType, Query, Resolver, registerEnumType } from 'type-graphql';
import type { IdempotencyContext } from './idempotency.context';
import { IdempotencyKeyScalar } from './idempotency.scalar';
import { validateKey } from './key';
import { Outcome } from './record.entity';
import type { IdempotencyStore } from './record.store';

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
  constructor(private readonly store: IdempotencyStore) {}

  @Query(() => IdempotencyRecordType, { nullable: true, description: "The viewer's live record for a key, or null." })
  async idempotencyRecord(
    @Ctx() ctx: IdempotencyContext,
    @Arg('key', () => IdempotencyKeyScalar, { description: 'The idempotency key.' }) key: string,
  ): Promise<IdempotencyRecordType | null> {
    const scope = ctx.idempotency.scope;
    if (!scope) return null;
    const row = await this.store.findLive(ctx.em, scope, validateKey(key, 'key'));
    return row
      ? { key: row.key, operation: row.operation, outcome: row.outcome, createdAt: row.createdAt, expiresAt: row.expiresAt }
      : null;
  }
}
