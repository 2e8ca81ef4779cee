// Generated from schema/schema.graphql by `npm run clients:metadata`; a test fails when it is stale.
/** The Mutation fields of this API that take an idempotency key. */
export const IDEMPOTENT_MUTATIONS: readonly string[] = ['cancelOrder', 'createOrder', 'createProduct'];
