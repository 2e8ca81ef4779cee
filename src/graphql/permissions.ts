import { allow, deny, rule, shield } from 'graphql-shield';
import { isAdmin } from '../auth/token';
import { ForbiddenError, UnauthenticatedError } from '../errors';
import { mayReadEvents } from '../events/permissions';
import type { Context } from './context';

const isAuthenticated = rule({ cache: 'contextual' })((_parent, _args, ctx: Context) => (ctx.viewer ? true : new UnauthenticatedError()));

const isAdministrator = rule({ cache: 'contextual' })((_parent, _args, ctx: Context) => {
  if (!ctx.viewer) return new UnauthenticatedError();
  return isAdmin(ctx.viewer) ? true : new ForbiddenError('Catalog administration requires the admin role');
});

const isEventReader = rule({ cache: 'contextual' })((_parent, _args, ctx: Context) => {
  if (!ctx.viewer) return new UnauthenticatedError();
  return mayReadEvents(ctx.viewer) ? true : new ForbiddenError('Reading events requires the events:read or admin role');
});

/**
 * Deny by default: every root field must be listed. Nested object fields are reachable only
 * through a permitted root field, and ownership is enforced by the services.
 */
export const permissions = shield(
  {
    Query: {
      '*': deny,
      viewer: allow,
      products: allow,
      product: allow,
      order: isAuthenticated,
      orders: isAuthenticated,
      idempotencyRecord: isAuthenticated,
      events: isEventReader,
    },
    Mutation: {
      '*': deny,
      createOrder: isAuthenticated,
      cancelOrder: isAuthenticated,
      createProduct: isAdministrator,
    },
  },
  {
    allowExternalErrors: true,
    fallbackRule: allow,
    fallbackError: () => new ForbiddenError(),
  },
);
