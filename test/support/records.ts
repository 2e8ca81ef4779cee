import { createCipheriv, randomBytes } from 'node:crypto';
import { deflateRawSync } from 'node:zlib';
import { plainCodec } from '../../src/idempotency';

/** Key -> the order id in each stored result (base64, as the plain codec wrote it); null for a stored failure. */
export function storedOrderIds(results: Record<string, string>): Record<string, string | null> {
  return Object.fromEntries(
    Object.entries(results).map(([key, stored]) => {
      const result = plainCodec.decode(Buffer.from(stored, 'base64'), '');
      return [key, result.kind === 'payload' ? ((result.payload as { order?: { id?: string } } | null)?.order?.id ?? null) : null];
    }),
  );
}

/**
 * An encrypted result as stored before results were compressed: the JSON text of an envelope
 * with base64 fields, AES-256-GCM over the result's JSON.
 */
export function legacyEnvelope(json: string, key: Buffer, associatedData: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(associatedData));
  const data = Buffer.concat([cipher.update(json, 'utf8'), cipher.final()]);
  const tag = cipher.getAuthTag();
  return JSON.stringify({ v: 1, alg: 'A256GCM', iv: iv.toString('base64'), tag: tag.toString('base64'), data: data.toString('base64') });
}

/** The associated data the encrypted codec binds a record's result to: its user, key and fingerprint. */
export function associatedDataOf(record: { user_id: string; key: string; fingerprint: Buffer }): string {
  return `${record.user_id}\u0000${record.key}\u0000${record.fingerprint.toString('hex')}`;
}

/** A plain result as written before results were compressed with Snappy: format byte 1, then the deflated JSON. */
export function deflatedResult(json: string): Buffer {
  return Buffer.concat([Buffer.of(1), deflateRawSync(json)]);
}

/**
 * An encrypted result as written before results were compressed with Snappy: format byte 2,
 * IV, tag, then AES-256-GCM over the deflated JSON.
 */
export function encryptedDeflatedResult(json: string, key: Buffer, associatedData: string): Buffer {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(associatedData));
  const data = Buffer.concat([cipher.update(deflateRawSync(json)), cipher.final()]);
  return Buffer.concat([Buffer.of(2), iv, cipher.getAuthTag(), data]);
}
