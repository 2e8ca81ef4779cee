import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

/** What a first execution produced: the whole payload, or a domain failure to replay. */
export type StoredResult =
  | { readonly kind: 'payload'; readonly payload: unknown }
  | { readonly kind: 'error'; readonly code: string; readonly message: string; readonly details: Record<string, unknown> };

/** How a record's `result` bytes are written; the number is stored in the record's `format`. */
export const RecordFormat = {
  /** The result's JSON text, UTF-8. PostgreSQL compresses large values itself (TOAST). */
  Json: 1,
  /** AES-256-GCM over the JSON text: IV (12 bytes), tag (16 bytes), ciphertext; `key_id` names the key. */
  EncryptedJson: 2,
} as const;

/** The stored form of a result. */
export interface EncodedResult {
  readonly format: number;
  /** Which encryption key wrote it; null when not encrypted. */
  readonly keyId: string | null;
  readonly result: Buffer;
}

/** Raised when a stored result cannot be decrypted or decoded. */
export class UnreadableResultError extends Error {}

const IV_BYTES = 12;
const TAG_BYTES = 16;

/** A short public name of a key, stored with each record it encrypts. */
export function keyIdOf(key: Buffer): string {
  return createHash('sha256').update('idempotency-key-id\u0000').update(key).digest('hex').slice(0, 16);
}

/**
 * Encodes results as JSON, encrypted with `currentKey` when one is given. Reads plain JSON
 * and anything encrypted with the current or a previous key, so rotating a key, or turning
 * encryption on, keeps every live record replayable. `binding` (user, key, fingerprint) is
 * the associated data: a ciphertext copied onto another record fails authentication.
 */
export class ResultCodec {
  private readonly keys = new Map<string, Buffer>();
  private readonly currentId: string | undefined;

  constructor(
    private readonly currentKey?: Buffer,
    previousKeys: readonly Buffer[] = [],
  ) {
    for (const key of [currentKey, ...previousKeys]) {
      if (!key) continue;
      if (key.length !== 32) throw new RangeError('AES-256-GCM needs 32-byte keys');
      this.keys.set(keyIdOf(key), key);
    }
    this.currentId = currentKey ? keyIdOf(currentKey) : undefined;
  }

  /** `json` is a {@link StoredResult} as JSON text. */
  encode(json: string, binding: string): EncodedResult {
    if (!this.currentKey || !this.currentId) return { format: RecordFormat.Json, keyId: null, result: Buffer.from(json) };
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.currentKey, iv);
    cipher.setAAD(Buffer.from(binding));
    const data = Buffer.concat([cipher.update(json, 'utf8'), cipher.final()]);
    return { format: RecordFormat.EncryptedJson, keyId: this.currentId, result: Buffer.concat([iv, cipher.getAuthTag(), data]) };
  }

  decode(stored: EncodedResult, binding: string): StoredResult {
    switch (stored.format) {
      case RecordFormat.Json:
        return parsed(stored.result);
      case RecordFormat.EncryptedJson:
        return parsed(this.decrypt(stored, binding));
      default:
        throw new UnreadableResultError(`unknown record format ${stored.format}`);
    }
  }

  private decrypt(stored: EncodedResult, binding: string): Buffer {
    const key = stored.keyId === null ? undefined : this.keys.get(stored.keyId);
    if (!key) throw new UnreadableResultError(`encrypted with key ${stored.keyId}, which is not configured`);
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, stored.result.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES });
      decipher.setAAD(Buffer.from(binding));
      decipher.setAuthTag(stored.result.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
      return Buffer.concat([decipher.update(stored.result.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]);
    } catch (error) {
      throw new UnreadableResultError('the record failed authentication', { cause: error });
    }
  }
}

function parsed(json: Buffer): StoredResult {
  let value: unknown;
  try {
    value = JSON.parse(json.toString('utf8'));
  } catch (error) {
    throw new UnreadableResultError('the record is not JSON', { cause: error });
  }
  const kind = (value as { kind?: unknown } | null)?.kind;
  if (kind !== 'payload' && kind !== 'error') throw new UnreadableResultError('the record has an unknown shape');
  return value as StoredResult;
}
