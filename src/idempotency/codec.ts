import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

/** Turns a stored result into the JSON kept in the record, and back. */
export interface ResultCodec {
  /** `json`, when given, is `result` already serialised (`JSON.stringify(result)`). */
  encode(result: StoredResult, associatedData: string, json?: string): unknown;
  /** Throws when the stored value cannot be authenticated or read. */
  decode(stored: unknown, associatedData: string): StoredResult;
}

/** What a first execution produced: the whole payload, or a domain error to replay. */
export type StoredResult =
  | { readonly kind: 'payload'; readonly payload: unknown }
  | { readonly kind: 'error'; readonly code: string; readonly message: string; readonly details: Record<string, unknown> };

/** Raised when a stored result fails authentication or does not match the configured codec. */
export class UnreadableRecordError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'UnreadableRecordError';
  }
}

const TAG_BYTES = 16;

interface Envelope {
  readonly v: 1;
  readonly alg: 'A256GCM';
  readonly iv: string;
  readonly tag: string;
  readonly data: string;
}

/** Stores results as plain JSONB. */
export const plainCodec: ResultCodec = {
  encode: (result) => result,
  decode: (stored) => {
    if (isEnvelope(stored)) throw new UnreadableRecordError('record is encrypted but no IDEMPOTENCY_ENCRYPTION_KEY is set');
    if (!isStoredResult(stored)) throw new UnreadableRecordError('record result has an unknown shape');
    return stored;
  },
};

/**
 * AES-256-GCM with a random 96-bit IV per record. The user, key and fingerprint are the
 * associated data, so a row copied onto another key fails authentication instead of replaying.
 */
export function encryptedCodec(key: Buffer): ResultCodec {
  if (key.length !== 32) throw new Error('AES-256-GCM needs a 32-byte key');
  return {
    encode(result, associatedData, json = JSON.stringify(result)): Envelope {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(Buffer.from(associatedData));
      const data = Buffer.concat([cipher.update(json, 'utf8'), cipher.final()]);
      return {
        v: 1,
        alg: 'A256GCM',
        iv: iv.toString('base64'),
        tag: cipher.getAuthTag().toString('base64'),
        data: data.toString('base64'),
      };
    },
    decode(stored, associatedData) {
      if (!isEnvelope(stored)) throw new UnreadableRecordError('record is not encrypted but IDEMPOTENCY_ENCRYPTION_KEY is set');
      let plain: string;
      try {
        const tag = Buffer.from(stored.tag, 'base64');
        // A shortened tag would weaken authentication: only the full 16 bytes are accepted.
        if (tag.length !== TAG_BYTES) throw new Error(`authentication tag must be ${TAG_BYTES} bytes`);
        const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(stored.iv, 'base64'), { authTagLength: TAG_BYTES });
        decipher.setAAD(Buffer.from(associatedData));
        decipher.setAuthTag(tag);
        plain = Buffer.concat([decipher.update(Buffer.from(stored.data, 'base64')), decipher.final()]).toString('utf8');
      } catch (error) {
        throw new UnreadableRecordError('record failed authentication', { cause: error });
      }
      const result: unknown = JSON.parse(plain);
      if (!isStoredResult(result)) throw new UnreadableRecordError('record result has an unknown shape');
      return result;
    },
  };
}

function isEnvelope(value: unknown): value is Envelope {
  if (value === null || typeof value !== 'object') return false;
  const envelope = value as Partial<Envelope>;
  return envelope.v === 1 && envelope.alg === 'A256GCM' && typeof envelope.iv === 'string' && typeof envelope.data === 'string';
}

function isStoredResult(value: unknown): value is StoredResult {
  if (value === null || typeof value !== 'object') return false;
  const kind = (value as { kind?: unknown }).kind;
  return kind === 'payload' || kind === 'error';
}
