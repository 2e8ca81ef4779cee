import 'reflect-metadata';
import { printSchemaWithDirectives } from '@graphql-tools/utils';
import { specifiedDirectives } from 'graphql';
import { buildSchemaSync, Field, Mutation, ObjectType, Query, Resolver } from 'type-graphql';
import { createIdempotency } from '../../src/idempotency';
import { Idempotent, idempotentDirective } from '../../src/idempotency/graphql';
import { IdempotencyKeyArg } from '../../src/idempotency/key';

@ObjectType()
class Done {
  @Field()
  ok!: boolean;
}

@Resolver()
class WindowsResolver {
  @Query(() => Boolean)
  alive(): boolean {
    return true;
  }

  @Mutation(() => Done)
  @Idempotent({ ttlSeconds: 600, tombstoneSeconds: 0 })
  brief(@IdempotencyKeyArg() _key: string | null): Done {
    return { ok: true };
  }

  @Mutation(() => Done)
  @Idempotent<Done>({ tombstoneSeconds: 86_400, resources: () => [] })
  remembered(@IdempotencyKeyArg() _key: string | null): Done {
    return { ok: true };
  }

  @Mutation(() => Done)
  @Idempotent()
  settled(@IdempotencyKeyArg() _key: string | null): Done {
    return { ok: true };
  }
}

describe('@Idempotent options', () => {
  it('prints the per-mutation windows on the @idempotent directive, and none when the settings apply', () => {
    const schema = buildSchemaSync({ resolvers: [WindowsResolver], directives: [...specifiedDirectives, idempotentDirective] });
    const sdl = printSchemaWithDirectives(schema);
    expect(sdl).toMatch(/brief\([^)]*\): Done! @idempotent\(ttlSeconds: 600, tombstoneSeconds: 0\)/s);
    expect(sdl).toMatch(/remembered\([^)]*\): Done! @idempotent\(tombstoneSeconds: 86400\)/s);
    expect(sdl).toMatch(/settled\([^)]*\): Done! @idempotent\n/s);
  });

  it.each([
    [{ ttlSeconds: 0 }, /ttlSeconds must be a whole number of seconds, at least 1; got 0/],
    [{ ttlSeconds: 1.5 }, /ttlSeconds/],
    [{ tombstoneSeconds: -1 }, /tombstoneSeconds must be a whole number of seconds; got -1/],
    [{ tombstoneSeconds: 0.5 }, /tombstoneSeconds/],
  ])('refuses %j when the mutation is declared', (options, message) => {
    expect(() => Idempotent(options)).toThrow(message);
  });

  it.each([[{ ttlSeconds: 0 }], [{ tombstoneSeconds: -1 }], [{ ttlSeconds: 2.5 }]])('refuses %j when the engine is built', (options) => {
    expect(() => createIdempotency(options)).toThrow(/^createIdempotency: (ttlSeconds|tombstoneSeconds) must be a whole number/);
  });
});
