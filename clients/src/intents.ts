/**
 * Where the key of a pending intent is kept until its outcome is known, so that a manual retry,
 * a page reload or an app restart that sends the same intent again reuses its key.
 */

/** A store of intent name → idempotency key. Methods may be synchronous or return promises. */
export interface IntentStore {
  get(intent: string): string | undefined | null | Promise<string | undefined | null>;
  set(intent: string, key: string): void | Promise<void>;
  delete(intent: string): void | Promise<void>;
}

/** The part of the Web Storage API (`localStorage`, `sessionStorage`) the store uses. */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** Keys kept in this process only: they survive a manual retry, not a restart. The default. */
export function memoryIntentStore(): IntentStore {
  const keys = new Map<string, string>();
  return {
    get: (intent) => keys.get(intent),
    set: (intent, key) => {
      keys.set(intent, key);
    },
    delete: (intent) => {
      keys.delete(intent);
    },
  };
}

/**
 * Keys kept in a Web Storage (default: the browser's `localStorage`), so they survive a reload.
 * Entries are named `<prefix><intent>`.
 */
export function webStorageIntentStore(storage?: StorageLike, prefix = 'idempotency-intent:'): IntentStore {
  const target = storage ?? (globalThis as { localStorage?: StorageLike }).localStorage;
  if (!target) throw new Error('webStorageIntentStore: no storage given and no localStorage in this environment');
  return {
    get: (intent) => target.getItem(prefix + intent),
    set: (intent, key) => target.setItem(prefix + intent, key),
    delete: (intent) => target.removeItem(prefix + intent),
  };
}

/** A new idempotency key: a random UUID, which matches the server's `^[A-Za-z0-9_-]{1,64}$`. */
export function newIdempotencyKey(): string {
  return globalThis.crypto.randomUUID();
}
