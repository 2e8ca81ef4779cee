import { type IntentStore, newIdempotencyKey } from './intents';
import type { RetryOptions } from './policy';

/**
 * What a caller may say about one call, in the operation context under `idempotency`:
 * `{ intent: 'checkout:cart-42' }` reuses the pending key of that intent; `{ key }` sets the key.
 */
export interface IdempotencyCall {
  /** Names the user's intent, e.g. `checkout:<cart id>`; its key is kept until its outcome is known. */
  readonly intent?: string;
  /** The key to send, when the caller keeps keys itself. */
  readonly key?: string;
}

/** Options shared by the Apollo link and the urql exchange. */
export interface IdempotencyOptions extends RetryOptions {
  /** Mutation fields that take a key; default: this API's, generated from schema/schema.graphql. */
  readonly idempotentMutations?: readonly string[];
  /** Where pending intents' keys are kept; default: in memory. */
  readonly intents?: IntentStore;
}

/** The key of one logical call: the caller's, the pending one of its intent, or a new UUID kept for the intent. */
export async function keyForCall(call: IdempotencyCall | undefined, intents: IntentStore): Promise<string> {
  if (call?.key) return call.key;
  if (!call?.intent) return newIdempotencyKey();
  const pending = await intents.get(call.intent);
  if (pending) return pending;
  const key = newIdempotencyKey();
  await intents.set(call.intent, key);
  return key;
}

/**
 * Forgets the intent's key once its outcome is known (an answer, success or final error). After
 * giving up without an answer the key stays, so the next try of the same intent reuses it.
 */
export async function settleCall(call: IdempotencyCall | undefined, intents: IntentStore, outcomeKnown: boolean): Promise<void> {
  if (call?.intent && outcomeKnown) await intents.delete(call.intent);
}
