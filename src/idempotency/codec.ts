import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { inflateRawSync } from 'node:zlib';
import { compressSync, uncompressSync } from 'snappy';

/** Turns a stored result into the bytes kept in the record, and back. */
export interface ResultCodec {
  /** `json` is a {@link StoredResult} as JSON text. */
  encode(json: string, associatedData: string): Buffer;
  /** Throws when the stored value cannot be authenticated or read. */
  decode(stored: Buffer, associatedData: string): StoredResult;
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

/**
 * The first byte of a stored result says how the rest is written. Results are compressed
 * because a record's row is most of its result: a createOrder payload of about 1 kB of JSON
 * compresses to about half, so more records fit on a page, and the purge reads, logs and frees
 * fewer pages for the same records.
 */
const Format = {
  /** The JSON, compressed with Snappy (its raw block format). */
  Snappy: 0x03,
  /** AES-256-GCM: IV (12 bytes), tag (16 bytes), then the ciphertext of the Snappy-compressed JSON. */
  EncryptedSnappy: 0x04,
  /** The JSON, deflated (raw DEFLATE, RFC 1951), as results were written before Snappy; read only. */
  Deflated: 0x01,
  /** AES-256-GCM over the deflated JSON, as encrypted results were written before Snappy; read only. */
  EncryptedDeflated: 0x02,
  /**
   * `{`: the JSON text itself, as rows written before results were compressed were converted
   * (from a JSONB column): a plain result, or an encrypted {@link LegacyEnvelope}.
   */
  LegacyJson: 0x7b,
} as const;

/**
 * Compresses JSON text. Snappy, not DEFLATE: on a server busy with first executions, deflating
 * one payload took 68 µs of its main thread (most of it setting up and tearing down a zlib
 * stream), against 18 µs for Snappy, which stores an order payload in about half its JSON
 * instead of about two fifths.
 */
function compressed(json: string): Buffer {
  return compressSync(json, { copyOutputData: true });
}

/**
 * The most a stored result may decompress to: far above any payload the API returns, and a bound
 * on what a forged row (a few kB decompressing to gigabytes) can make the server allocate.
 */
export const MAX_RESULT_BYTES = 64 * 1024 * 1024;

const IV_BYTES = 12;
const TAG_BYTES = 16;

/** An encrypted result as stored before results were compressed: a JSON object, base64 fields. */
interface LegacyEnvelope {
  readonly v: 1;
  readonly alg: 'A256GCM';
  readonly iv: string;
  readonly tag: string;
  readonly data: string;
}

/** Stores results as compressed JSON. */
export const plainCodec: ResultCodec = {
  encode: (json) => joined(Buffer.of(Format.Snappy), compressed(json)),
  decode(stored) {
    switch (stored[0]) {
      case Format.Snappy:
      case Format.Deflated:
        return storedResult(decompressed(stored[0], stored.subarray(1)));
      case Format.EncryptedSnappy:
      case Format.EncryptedDeflated:
        throw new UnreadableRecordError('record is encrypted but no IDEMPOTENCY_ENCRYPTION_KEY is set');
      case Format.LegacyJson: {
        const value = parsed(stored);
        if (isLegacyEnvelope(value)) throw new UnreadableRecordError('record is encrypted but no IDEMPOTENCY_ENCRYPTION_KEY is set');
        return storedResult(value);
      }
      default:
        throw new UnreadableRecordError('record result has an unknown format');
    }
  },
};

/**
 * AES-256-GCM with a random 96-bit IV per record, over the compressed JSON. The user, key and
 * fingerprint are the associated data, so a row copied onto another key fails authentication
 * instead of replaying.
 */
export function encryptedCodec(key: Buffer): ResultCodec {
  if (key.length !== 32) throw new Error('AES-256-GCM needs a 32-byte key');

  function decrypt(iv: Buffer, tag: Buffer, data: Buffer, associatedData: string): Buffer {
    try {
      // A shortened tag would weaken authentication: only the full 16 bytes are accepted.
      if (tag.length !== TAG_BYTES) throw new Error(`authentication tag must be ${TAG_BYTES} bytes`);
      const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
      decipher.setAAD(Buffer.from(associatedData));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(data), decipher.final()]);
    } catch (error) {
      throw new UnreadableRecordError('record failed authentication', { cause: error });
    }
  }

  return {
    encode(json, associatedData) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(Buffer.from(associatedData));
      const data = Buffer.concat([cipher.update(compressed(json)), cipher.final()]);
      return joined(Buffer.of(Format.EncryptedSnappy), iv, cipher.getAuthTag(), data);
    },
    decode(stored, associatedData) {
      switch (stored[0]) {
        case Format.EncryptedSnappy:
        case Format.EncryptedDeflated: {
          const iv = stored.subarray(1, 1 + IV_BYTES);
          const tag = stored.subarray(1 + IV_BYTES, 1 + IV_BYTES + TAG_BYTES);
          const plain = decrypt(iv, tag, stored.subarray(1 + IV_BYTES + TAG_BYTES), associatedData);
          return storedResult(decompressed(stored[0] === Format.EncryptedSnappy ? Format.Snappy : Format.Deflated, plain));
        }
        case Format.LegacyJson: {
          const envelope = parsed(stored);
          if (!isLegacyEnvelope(envelope)) throw new UnreadableRecordError('record is not encrypted but IDEMPOTENCY_ENCRYPTION_KEY is set');
          const [iv, tag, data] = [envelope.iv, envelope.tag, envelope.data].map((field) => Buffer.from(field, 'base64')) as [
            Buffer,
            Buffer,
            Buffer,
          ];
          return storedResult(parsed(decrypt(iv, tag, data, associatedData)));
        }
        case Format.Snappy:
        case Format.Deflated:
          throw new UnreadableRecordError('record is not encrypted but IDEMPOTENCY_ENCRYPTION_KEY is set');
        default:
          throw new UnreadableRecordError('record result has an unknown format');
      }
    },
  };
}

/**
 * `parts` in one buffer of its own. `Buffer.concat` would cut a small result from Node's shared
 * 8 kB pool, and a record kept in the replay cache would then hold a whole pool slab alive.
 */
function joined(...parts: Buffer[]): Buffer {
  const whole = Buffer.allocUnsafeSlow(parts.reduce((length, part) => length + part.length, 0));
  let at = 0;
  for (const part of parts) at += part.copy(whole, at);
  return whole;
}

/** The JSON of a compressed result, parsed; `format` says how it was compressed. */
function decompressed(format: typeof Format.Snappy | typeof Format.Deflated, bytes: Buffer): unknown {
  let json: Buffer;
  try {
    if (format === Format.Deflated) json = inflateRawSync(bytes, { maxOutputLength: MAX_RESULT_BYTES });
    else {
      // The block declares its length up front, and the decompressor allocates that much.
      const length = snappyLength(bytes);
      if (length < 0 || length > MAX_RESULT_BYTES) throw new RangeError(`declared length ${length} is out of range`);
      json = uncompressSync(bytes, { asBuffer: true, copyOutputData: true }) as Buffer;
    }
  } catch (error) {
    throw new UnreadableRecordError('record result cannot be decompressed', { cause: error });
  }
  return parsed(json);
}

/**
 * The uncompressed length a Snappy block declares in its preamble (a little-endian base-128
 * varint of at most 5 bytes), or -1 when the preamble is cut short or too long.
 */
function snappyLength(block: Buffer): number {
  let length = 0;
  for (let index = 0; index < 5 && index < block.length; index++) {
    const byte = block[index] as number;
    length += (byte & 0x7f) * 2 ** (7 * index);
    if (byte < 0x80) return length;
  }
  return -1;
}

function parsed(json: Buffer): unknown {
  try {
    return JSON.parse(json.toString('utf8'));
  } catch (error) {
    throw new UnreadableRecordError('record result is not JSON', { cause: error });
  }
}

function storedResult(value: unknown): StoredResult {
  if (value === null || typeof value !== 'object') throw new UnreadableRecordError('record result has an unknown shape');
  const kind = (value as { kind?: unknown }).kind;
  if (kind !== 'payload' && kind !== 'error') throw new UnreadableRecordError('record result has an unknown shape');
  return value as StoredResult;
}

function isLegacyEnvelope(value: unknown): value is LegacyEnvelope {
  if (value === null || typeof value !== 'object') return false;
  const envelope = value as Partial<LegacyEnvelope>;
  return (
    envelope.v === 1 &&
    envelope.alg === 'A256GCM' &&
    typeof envelope.iv === 'string' &&
    typeof envelope.tag === 'string' &&
    typeof envelope.data === 'string'
  );
}
