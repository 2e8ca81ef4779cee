import { Ctx, Field, ID, ObjectType, Query, Resolver } from 'type-graphql';
import type { Context } from '../graphql/context';

@ObjectType('Viewer', { description: 'The authenticated caller.' })
export class ViewerType {
  @Field(() => ID, { description: 'The token subject (user id).' })
  id!: string;

  @Field(() => [String], { description: 'Roles from the token; "admin" administers the catalog.' })
  roles!: string[];
}

@Resolver()
export class ViewerResolver {
  @Query(() => ViewerType, { nullable: true, description: 'The caller, or null when anonymous.' })
  viewer(@Ctx() ctx: Context): ViewerType | null {
    return ctx.viewer ? { id: ctx.viewer.id, roles: [...ctx.viewer.roles] } : null;
  }
}
