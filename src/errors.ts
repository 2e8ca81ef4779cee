/** Every code a client can find in `errors[].extensions.code`. */
export const ErrorCode = {
  Unauthenticated: 'UNAUTHENTICATED',
  Forbidden: 'FORBIDDEN',
  BadUserInput: 'BAD_USER_INPUT',
  ProductNotFound: 'PRODUCT_NOT_FOUND',
  InsufficientStock: 'INSUFFICIENT_STOCK',
  OrderNotFound: 'ORDER_NOT_FOUND',
  OrderNotCancellable: 'ORDER_NOT_CANCELLABLE',
  SkuTaken: 'SKU_TAKEN',
  IdempotencyKeyMissing: 'IDEMPOTENCY_KEY_MISSING',
  IdempotencyKeyInvalid: 'IDEMPOTENCY_KEY_INVALID',
  IdempotencyKeyReused: 'IDEMPOTENCY_KEY_REUSED',
  IdempotencyRequestInProgress: 'IDEMPOTENCY_REQUEST_IN_PROGRESS',
  IdempotencyRecordUnreadable: 'IDEMPOTENCY_RECORD_UNREADABLE',
  IdempotencyKeyExpired: 'IDEMPOTENCY_KEY_EXPIRED',
  RateLimited: 'RATE_LIMITED',
  ServiceUnavailable: 'SERVICE_UNAVAILABLE',
  InternalServerError: 'INTERNAL_SERVER_ERROR',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/**
 * Base of every error a client may see unmasked. Anything else reaching the GraphQL layer is
 * reported as INTERNAL_SERVER_ERROR.
 */
export abstract class AppError extends Error {
  abstract readonly code: ErrorCode;
  /**
   * True for deterministic outcomes of a mutation's business rules: the same input against the
   * same state fails the same way, so the failure is a result worth storing and replaying.
   */
  readonly domain: boolean = false;

  constructor(
    message: string,
    /** Extra fields published in `extensions` next to the code. */
    readonly details: Readonly<Record<string, unknown>> = {},
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * Input that breaks a documented rule (length, range, format, mixing currencies...). Not a
 * domain outcome: like a request that never started, it is not stored, so the client may fix
 * the input and retry with the same key.
 */
export class BadUserInputError extends AppError {
  readonly code = ErrorCode.BadUserInput;
}

export class UnauthenticatedError extends AppError {
  readonly code = ErrorCode.Unauthenticated;
  constructor(message = 'Authentication required: send Authorization: Bearer <token>') {
    super(message);
  }
}

export class ForbiddenError extends AppError {
  readonly code = ErrorCode.Forbidden;
  constructor(message = 'Not allowed') {
    super(message);
  }
}

export class ProductNotFoundError extends AppError {
  readonly code = ErrorCode.ProductNotFound;
  override readonly domain = true;
  constructor(productIds: readonly string[]) {
    super(`Product not found: ${productIds.join(', ')}`, { productIds });
  }
}

export class InsufficientStockError extends AppError {
  readonly code = ErrorCode.InsufficientStock;
  override readonly domain = true;
  constructor(productIds: readonly string[]) {
    super(`Insufficient stock for product: ${productIds.join(', ')}`, { productIds });
  }
}

export class OrderNotFoundError extends AppError {
  readonly code = ErrorCode.OrderNotFound;
  override readonly domain = true;
  constructor(orderId: string) {
    super(`Order not found: ${orderId}`, { orderId });
  }
}

export class OrderNotCancellableError extends AppError {
  readonly code = ErrorCode.OrderNotCancellable;
  override readonly domain = true;
  constructor(orderId: string, status: string) {
    super(`Order ${orderId} cannot be cancelled: it is ${status}`, { orderId, status });
  }
}

export class SkuTakenError extends AppError {
  readonly code = ErrorCode.SkuTaken;
  override readonly domain = true;
  constructor(sku: string) {
    super(`SKU already exists: ${sku}`, { sku });
  }
}

/** The database cannot be reached or refused the work for a transient reason; retry later. */
export class ServiceUnavailableError extends AppError {
  readonly code = ErrorCode.ServiceUnavailable;
  constructor(options?: ErrorOptions) {
    super('Service temporarily unavailable; retry the request', { retryable: true }, options);
  }
}
