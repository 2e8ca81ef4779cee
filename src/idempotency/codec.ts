import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import type { DomainFailure } from './errors';

/** What a first execution produced: the whole payload, or a domain failure to replay. */
export type StoredResult = { readonly kind: 'payload'; readonly payload: unknown } | ({ readonly kind: 'error' } & DomainFailure);

/** How a record's `result` bytes are written, stored in its `format`; PostgreSQL compresses large values itself (TOAST). */
export const RecordFormat = {
  /** The result's JSON text, UTF-8. */
  Json: 1,
  /** AES-256-GCM over the JSON text: IV (12 bytes), tag (16 bytes), ciphertext; `keyId` names the key. */
  EncryptedJson: 2,
} as const;

/** The stored form of a result; `keyId` is null when it is not encrypted. */
export interface EncodedResult {
  readonly format: number;
  readonly keyId: string | null;
  readonly result: Buffer;
}

const IV_BYTES = 12;
const TAG_BYTES = 16;

/** A short public name of a key, stored with each record it encrypts. */
export const keyIdOf = (key: Buffer) => createHash('sha256').update('idempotency-key-id\u0000').update(key).digest('hex').slice(0, 16);

/** The associated data of an encrypted result, so that a ciphertext copied onto another record fails authentication. */
export const bindingOf = ({ scope, key, fingerprint }: { readonly scope: string; readonly key: string; readonly fingerprint: Buffer }) =>
  `${scope}\u0000${key}\u0000${fingerprint.toString('hex')}`;

/**
 * JSON, encrypted with `currentKey` when one is given. Plain JSON and anything encrypted with the
 * current or a previous key stay readable, so turning encryption on or rotating a key keeps every
 * live record replayable.
 */
export class ResultCodec {
  private readonly keys = new Map<string, Buffer>();
  private readonly current: { readonly key: Buffer; readonly id: string } | undefined;

  constructor(currentKey?: Buffer, previousKeys: readonly Buffer[] = []) {
    for (const key of currentKey ? [currentKey, ...previousKeys] : previousKeys) {
      if (key.length !== 32) throw new RangeError('AES-256-GCM needs 32-byte keys');
      this.keys.set(keyIdOf(key), key);
    }
    this.current = currentKey && { key: currentKey, id: keyIdOf(currentKey) };
  }

  /** `json` is a {@link StoredResult} as JSON text. */
  encode(json: string, binding: string): EncodedResult {
    if (!this.current) return { format: RecordFormat.Json, keyId: null, result: Buffer.from(json) };
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.current.key, iv).setAAD(Buffer.from(binding));
    const data = Buffer.concat([cipher.update(json, 'utf8'), cipher.final()]);
    return { format: RecordFormat.EncryptedJson, keyId: this.current.id, result: Buffer.concat([iv, cipher.getAuthTag(), data]) };
  }

  /** The stored result, or null when it cannot be decrypted or is not a stored result. */
  decode(stored: EncodedResult, binding: string): StoredResult | null {
    try {
      const text = this.plaintext(stored, binding)?.toString('utf8');
      const value = text === undefined ? null : (JSON.parse(text) as { kind?: unknown } | null);
      return value?.kind === 'payload' || value?.kind === 'error' ? (value as StoredResult) : null;
    } catch {
      // The key does not match, the ciphertext was changed or moved, or the bytes are not JSON.
      return null;
    }
  }

  /** Null for a format or key this process does not have. */
  private plaintext({ format, keyId, result }: EncodedResult, binding: string): Buffer | null {
    if (format === RecordFormat.Json) return result;
    const key = keyId === null ? undefined : this.keys.get(keyId);
    if (format !== RecordFormat.EncryptedJson || !key) return null;
    const decipher = createDecipheriv('aes-256-gcm', key, result.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES })
      .setAAD(Buffer.from(binding))
      .setAuthTag(result.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    return Buffer.concat([decipher.update(result.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]);
  }
}
