import { printSchemaWithDirectives } from '@graphql-tools/utils';
import { type GraphQLSchema, lexicographicSortSchema, specifiedDirectives } from 'graphql';
import { applyMiddleware, type IMiddlewareTypeMap } from 'graphql-middleware';
import { DateTimeResolver } from 'graphql-scalars';
import { buildSchemaSync, type ContainerType } from 'type-graphql';
import { ViewerResolver } from '../auth/viewer.resolver';
import { CatalogService } from '../catalog/catalog.service';
import { ProductResolver } from '../catalog/product.resolver';
import { EventResolver } from '../events';
import { createIdempotency, type Idempotency } from '../idempotency';
import { OrderLineResolver, OrderResolver } from '../orders/order.resolver';
import { OrderService } from '../orders/order.service';
import { permissions } from './permissions';

const RESOLVERS = [ViewerResolver, ProductResolver, OrderResolver, OrderLineResolver, EventResolver] as const;

/** The executable schema without permissions: what the SDL is printed from. */
export function buildBaseSchema(idempotency: Idempotency = createIdempotency(), orders = new OrderService()): GraphQLSchema {
  const catalog = new CatalogService();
  const instances = new Map<unknown, unknown>([
    [ViewerResolver, new ViewerResolver()],
    [ProductResolver, new ProductResolver(catalog)],
    [OrderResolver, new OrderResolver(orders)],
    [OrderLineResolver, new OrderLineResolver()],
    [EventResolver, new EventResolver()],
    ...idempotency.resolvers.map((resolver) => [resolver, new resolver()] as const),
  ]);
  const container: ContainerType = {
    get: (type) => {
      const instance = instances.get(type);
      if (!instance) throw new Error(`no resolver instance for ${String(type)}`);
      return instance;
    },
  };
  const schema = buildSchemaSync({
    resolvers: [...RESOLVERS, ...idempotency.resolvers],
    // The built-in directives (@skip, @include...) stay: the option replaces the whole list.
    directives: [...specifiedDirectives, ...idempotency.directives],
    container,
    scalarsMap: [{ type: Date, scalar: DateTimeResolver }],
    validate: false,
    emitSchemaFile: false,
  });
  describeRootTypes(schema);
  return schema;
}

// type-graphql creates Query and Mutation itself and takes no description for them, so the
// descriptions are set on the built types (before anything prints or wraps the schema).
function describeRootTypes(schema: GraphQLSchema): void {
  const query = schema.getQueryType();
  const mutation = schema.getMutationType();
  if (query) query.description = "Reads: the public catalog, the viewer, and the viewer's own orders and idempotency records.";
  if (mutation) {
    mutation.description =
      'Writes, each idempotent by key (the idempotencyKey argument or the Idempotency-Key header): a retry returns the first outcome.';
  }
}

/**
 * The schema served: base schema with graphql-shield permissions on the root fields. Every
 * request enters through a root field, where deny-by-default applies; wrapping the nested
 * fields too would only add a rule evaluation to each of them (all `allow`).
 */
export function buildSchema(idempotency?: Idempotency, orders?: OrderService): GraphQLSchema {
  const schema = buildBaseSchema(idempotency, orders);
  // shield generates a per-type field map (its option-less form is a single function, never used here).
  const rules = permissions.generate(schema) as IMiddlewareTypeMap;
  return applyMiddleware(schema, { Query: rules.Query, Mutation: rules.Mutation } as IMiddlewareTypeMap);
}

/** The SDL clients test against, sorted for stable diffs. */
export function printSdl(schema: GraphQLSchema): string {
  // Prints applied directives too (graphql-js's printSchema drops them), such as @idempotent.
  return `${printSchemaWithDirectives(lexicographicSortSchema(schema))}\n`;
}
