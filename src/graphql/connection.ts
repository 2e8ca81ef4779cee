import { ArgsType, type ClassType, Field, Int, ObjectType } from 'type-graphql';
import { BadUserInputError } from '../errors';

/** Largest page a client may ask for; larger `first` values are clamped to it. */
export const MAX_PAGE_SIZE = 100;

@ObjectType({ description: 'Where a page of a connection ends.' })
export class PageInfo {
  @Field({ description: 'Whether more items follow this page.' })
  hasNextPage!: boolean;

  @Field(() => String, { nullable: true, description: 'Cursor of the last item of this page; pass as `after`.' })
  endCursor!: string | null;
}

/** `first` and `after` of a paginated field. */
@ArgsType()
export class PageArgs {
  @Field(() => Int, { defaultValue: 20, description: 'Page size, at most 100 (larger values are clamped).' })
  first!: number;

  @Field(() => String, { nullable: true, description: 'endCursor of the previous page.' })
  after?: string | null;
}

/** One page of items with an opaque cursor for each. */
export interface Page<T> {
  readonly items: readonly T[];
  readonly hasNextPage: boolean;
}

export interface Edge<T> {
  cursor: string;
  node: T;
}

export interface Connection<T> {
  edges: Edge<T>[];
  pageInfo: PageInfo;
}

/** Builds the `<Name>Connection` and `<Name>Edge` object types for a node type. */
export function connectionType<T extends object>(name: string, node: ClassType<T>): ClassType<Connection<T>> {
  @ObjectType(`${name}Edge`, { description: `An item of a ${name} connection with its cursor.` })
  class EdgeType {
    @Field({ description: 'Opaque cursor of this item.' })
    cursor!: string;

    @Field(() => node, { description: `The ${name}.` })
    node!: T;
  }

  @ObjectType(`${name}Connection`, { description: `A page of ${name} items.` })
  class ConnectionType {
    @Field(() => [EdgeType], { description: 'The items of this page, in order.' })
    edges!: EdgeType[];

    @Field(() => PageInfo, { description: 'Whether more items follow, and where to continue.' })
    pageInfo!: PageInfo;
  }
  return ConnectionType;
}

/** Maps a page to a connection, encoding each item's cursor. */
export function toConnection<T, N>(page: Page<T>, cursorOf: (item: T) => string, toNode: (item: T) => N): Connection<N> {
  const edges = page.items.map((item) => ({ cursor: cursorOf(item), node: toNode(item) }));
  return { edges, pageInfo: { hasNextPage: page.hasNextPage, endCursor: edges.at(-1)?.cursor ?? null } };
}

/** Validates `first`: negative is an error, above {@link MAX_PAGE_SIZE} is clamped. */
export function pageSize(first: number): number {
  if (!Number.isInteger(first) || first < 0) throw new BadUserInputError('first must be zero or a positive integer', { argument: 'first' });
  return Math.min(first, MAX_PAGE_SIZE);
}
