import type { EntityManager } from '@mikro-orm/postgresql';
import DataLoader from 'dataloader';
import { Product } from './product.entity';

/** Loads products by id in one statement per batch; one loader per request. */
export function productByIdLoader(em: EntityManager): DataLoader<string, Product | null> {
  return new DataLoader(async (ids) => {
    const products = await em.find(Product, { id: { $in: [...ids] } });
    const byId = new Map(products.map((product) => [product.id, product]));
    return ids.map((id) => byId.get(id) ?? null);
  });
}
