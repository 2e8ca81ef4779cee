import { Args, Ctx, Query, Resolver } from 'type-graphql';
import { connectionType, PageArgs, pageSize, toConnection } from '../graphql/connection';
import type { Context } from '../graphql/context';
import { FeedEvent, toEventView } from './event.type';
import { eventCursor, readEvents } from './feed';

const EventConnection = connectionType('Event', FeedEvent);

@Resolver(() => FeedEvent)
export class EventResolver {
  @Query(() => EventConnection, {
    description:
      'Events in commit order (role events:read or admin). An event appears once every earlier transaction has ended, so paging with endCursor never skips one.',
  })
  async events(@Ctx() ctx: Context, @Args(() => PageArgs) { first, after }: PageArgs) {
    const page = await readEvents(ctx.em, pageSize(first), after);
    return toConnection(page, eventCursor, toEventView);
  }
}
