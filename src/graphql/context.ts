import type { EntityManager } from '@mikro-orm/postgresql';
import type DataLoader from 'dataloader';
import type { FastifyBaseLogger } from 'fastify';
import type { Viewer } from '../auth/token';
import type { Product } from '../catalog/product.entity';
import { productByIdLoader } from '../catalog/product.loaders';
import type { IdempotencyRequest } from '../idempotency';
import { linesByOrderIdLoader } from '../orders/order.loaders';
import type { OrderLine } from '../orders/order-line.entity';

/** Batching loaders of one request. */
export interface Loaders {
  readonly productById: DataLoader<string, Product | null>;
  readonly linesByOrderId: DataLoader<string, OrderLine[]>;
}

/** Per-request state handed to every resolver. Nothing here outlives the request. */
export interface Context {
  /** This request's own fork of the EntityManager. */
  readonly em: EntityManager;
  readonly viewer: Viewer | null;
  readonly loaders: Loaders;
  /** Lower-cased request headers. */
  readonly headers: Readonly<Record<string, string | undefined>>;
  readonly log: FastifyBaseLogger;
  /** Idempotency state of this request (key header, markers). */
  readonly idempotency: IdempotencyRequest;
}

export function createLoaders(em: EntityManager): Loaders {
  return { productById: productByIdLoader(em), linesByOrderId: linesByOrderIdLoader(em) };
}
