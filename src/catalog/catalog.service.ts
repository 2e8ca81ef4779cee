import type { EntityManager } from '@mikro-orm/postgresql';
import { decodeCursor, encodeCursor, invalidCursor, requireUuid } from '../cursor';
import { BadUserInputError, SkuTakenError } from '../errors';
import { appendEvent } from '../events';
import type { Page } from '../graphql/connection';
import { characterCount } from '../text';
import { Product } from './product.entity';
import { productCreated } from './product.events';

export interface NewProduct {
  readonly sku: string;
  readonly name: string;
  readonly priceCents: number;
  readonly currency: string;
  readonly stock: number;
}

const SKU = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const CURRENCY = /^[A-Z]{3}$/;
/** Highest unit price accepted, so that any valid order total fits a GraphQL Int. */
export const MAX_PRICE_CENTS = 10_000_000;
export const MAX_STOCK = 1_000_000_000;
export const MAX_NAME_LENGTH = 200;

/** Catalog rules: listing, lookup and creation of products. */
export class CatalogService {
  /** Products ordered by SKU, after the given cursor. */
  async listProducts(em: EntityManager, first: number, after: string | null | undefined): Promise<Page<Product>> {
    let where = {};
    if (after != null) {
      const [sku] = decodeCursor('product', after, 1) as [string];
      if (!SKU.test(sku)) throw invalidCursor();
      where = { sku: { $gt: sku } };
    }
    const rows = await em.find(Product, where, { orderBy: { sku: 'asc' }, limit: first + 1 });
    return { items: rows.slice(0, first), hasNextPage: rows.length > first };
  }

  productCursor(product: Product): string {
    return encodeCursor('product', [product.sku]);
  }

  async findProduct(em: EntityManager, id: string): Promise<Product | null> {
    return em.findOne(Product, { id: requireUuid(id, 'id') });
  }

  /** Adds a product; a duplicate SKU is SKU_TAKEN, bad fields are BAD_USER_INPUT. */
  async createProduct(em: EntityManager, input: NewProduct): Promise<Product> {
    validateProduct(input);
    const product = new Product(input);
    // ON CONFLICT keeps the transaction usable when another request took the SKU first, so the
    // failure can be recorded in the same transaction.
    const result = await em
      .createQueryBuilder(Product)
      .insert({ ...product })
      .onConflict('sku')
      .ignore()
      .execute('run');
    if (result.affectedRows !== 1) throw new SkuTakenError(input.sku);
    await appendEvent(em, productCreated(product));
    return product;
  }
}

function validateProduct(input: NewProduct): void {
  const problems: string[] = [];
  if (!SKU.test(input.sku)) problems.push('sku must be 1 to 64 characters of A-Z a-z 0-9 _ . - starting with a letter or digit');
  if (input.name.trim().length === 0 || characterCount(input.name) > MAX_NAME_LENGTH) {
    problems.push(`name must be 1 to ${MAX_NAME_LENGTH} characters`);
  }
  if (!Number.isInteger(input.priceCents) || input.priceCents < 0 || input.priceCents > MAX_PRICE_CENTS) {
    problems.push(`priceCents must be an integer from 0 to ${MAX_PRICE_CENTS}`);
  }
  if (!CURRENCY.test(input.currency)) problems.push('currency must be a three-letter ISO 4217 code in upper case');
  if (!Number.isInteger(input.stock) || input.stock < 0 || input.stock > MAX_STOCK) {
    problems.push(`stock must be an integer from 0 to ${MAX_STOCK}`);
  }
  if (problems.length > 0) throw new BadUserInputError(problems.join('; '), { problems });
}
