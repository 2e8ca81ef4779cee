import type { EntityManager } from '@mikro-orm/postgresql';
import { Product } from '../catalog/product.entity';

/** The demo catalog: stable SKUs, USD prices, stock of at least 100 each. */
export const DEMO_PRODUCTS: readonly { sku: string; name: string; priceCents: number; stock: number }[] = [
  { sku: 'MUG-001', name: 'Ceramic mug', priceCents: 1200, stock: 250 },
  { sku: 'TEE-001', name: 'Cotton T-shirt', priceCents: 1900, stock: 300 },
  { sku: 'CAP-001', name: 'Baseball cap', priceCents: 1500, stock: 200 },
  { sku: 'BAG-001', name: 'Canvas tote bag', priceCents: 1800, stock: 150 },
  { sku: 'NB-001', name: 'Dot-grid notebook', priceCents: 900, stock: 500 },
  { sku: 'PEN-001', name: 'Gel pen, pack of 3', priceCents: 600, stock: 1000 },
  { sku: 'STK-001', name: 'Sticker sheet', priceCents: 400, stock: 800 },
  { sku: 'BTL-001', name: 'Steel water bottle', priceCents: 2400, stock: 180 },
  { sku: 'HOOD-001', name: 'Hooded sweatshirt', priceCents: 4900, stock: 120 },
  { sku: 'SOCK-001', name: 'Wool socks', priceCents: 1100, stock: 400 },
  { sku: 'PIN-001', name: 'Enamel pin', priceCents: 700, stock: 600 },
  { sku: 'POS-001', name: 'Art print poster', priceCents: 2200, stock: 100 },
  { sku: 'KEY-001', name: 'Keychain', priceCents: 500, stock: 700 },
  { sku: 'UMB-001', name: 'Compact umbrella', priceCents: 2900, stock: 140 },
];

/** Inserts the demo catalog when the catalog is empty; returns how many products were added. */
export async function seedCatalog(em: EntityManager): Promise<number> {
  return em.transactional(async (tx) => {
    // Serialises concurrent first starts on one database.
    await tx.execute('select pg_advisory_xact_lock(7305001)');
    if ((await tx.count(Product, {})) > 0) return 0;
    for (const product of DEMO_PRODUCTS) tx.persist(new Product({ ...product, currency: 'USD' }));
    await tx.flush();
    return DEMO_PRODUCTS.length;
  });
}
