/** A result stored unencrypted (record format 1): its JSON text. */
export function plainResult(stored: Buffer): { kind: 'payload'; payload: unknown } | { kind: 'error'; code: string; message: string } {
  return JSON.parse(stored.toString('utf8'));
}

/** Key -> the order id in each stored result (base64 of an unencrypted result); null for a stored failure. */
export function storedOrderIds(results: Record<string, string>): Record<string, string | null> {
  return Object.fromEntries(
    Object.entries(results).map(([key, stored]) => {
      const result = plainResult(Buffer.from(stored, 'base64'));
      return [key, result.kind === 'payload' ? ((result.payload as { order?: { id?: string } } | null)?.order?.id ?? null) : null];
    }),
  );
}
