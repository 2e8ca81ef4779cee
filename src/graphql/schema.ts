import { type GraphQLSchema, lexicographicSortSchema, printSchema } from 'graphql';
import { applyMiddleware, type IMiddlewareTypeMap } from 'graphql-middleware';
import { DateTimeResolver } from 'graphql-scalars';
import { buildSchemaSync, type ContainerType } from 'type-graphql';
import { ViewerResolver } from '../auth/viewer.resolver';
import { CatalogService } from '../catalog/catalog.service';
import { ProductResolver } from '../catalog/product.resolver';
import { EventResolver } from '../events';
import { IdempotencyRecordResolver, IdempotencyStore } from '../idempotency';
import { OrderLineResolver, OrderResolver } from '../orders/order.resolver';
import { OrderService } from '../orders/order.service';
import { permissions } from './permissions';

const RESOLVERS = [ViewerResolver, ProductResolver, OrderResolver, OrderLineResolver, IdempotencyRecordResolver, EventResolver] as const;

/** The executable schema without permissions: what the SDL is printed from. */
export function buildBaseSchema(store: IdempotencyStore = new IdempotencyStore()): GraphQLSchema {
  const catalog = new CatalogService();
  const orders = new OrderService();
  const instances = new Map<unknown, unknown>([
    [ViewerResolver, new ViewerResolver()],
    [ProductResolver, new ProductResolver(catalog)],
    [OrderResolver, new OrderResolver(orders)],
    [OrderLineResolver, new OrderLineResolver()],
    [IdempotencyRecordResolver, new IdempotencyRecordResolver(store)],
    [EventResolver, new EventResolver()],
  ]);
  const container: ContainerType = {
    get: (type) => {
      const instance = instances.get(type);
      if (!instance) throw new Error(`no resolver instance for ${String(type)}`);
      return instance;
    },
  };
  const schema = buildSchemaSync({
    resolvers: RESOLVERS,
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
export function buildSchema(store?: IdempotencyStore): GraphQLSchema {
  const schema = buildBaseSchema(store);
  // shield generates a per-type field map (its option-less form is a single function, never used here).
  const rules = permissions.generate(schema) as IMiddlewareTypeMap;
  return applyMiddleware(schema, { Query: rules.Query, Mutation: rules.Mutation } as IMiddlewareTypeMap);
}

/** The SDL clients test against, sorted for stable diffs. */
export function printSdl(schema: GraphQLSchema): string {
  return `${printSchema(lexicographicSortSchema(schema))}\n`;
}
