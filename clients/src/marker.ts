/** The replay marker the server puts in `extensions.idempotency` of every keyed answer. */

/** One idempotent field's entry, as the server reports it. */
export interface IdempotencyEntry {
  readonly path: readonly (string | number)[];
  readonly key: string;
  readonly replayed: boolean;
  readonly firstExecutedAt: string;
  readonly expiresAt: string;
  /** When the key's tombstone ends and a request with it executes anew (ISO 8601). */
  readonly forgottenAt: string;
}

/** What a caller usually wants to know about a keyed answer. */
export interface IdempotencyInfo {
  /** True when any field's answer is the stored outcome of an earlier request with the same key. */
  readonly replayed: boolean;
  /** When the first execution ran (ISO 8601), of the first entry. */
  readonly firstExecutedAt: string | undefined;
  /** Until when the key replays this answer (ISO 8601), of the first entry. */
  readonly expiresAt: string | undefined;
  readonly key: string | undefined;
  readonly entries: readonly IdempotencyEntry[];
}

/** Reads the replay marker of any result with `extensions` (Apollo, urql, a parsed response body); undefined when absent. */
export function readIdempotency(
  result: { readonly extensions?: Record<string, unknown> | null } | null | undefined,
): IdempotencyInfo | undefined {
  const entries = result?.extensions?.idempotency;
  if (!Array.isArray(entries) || entries.length === 0) return undefined;
  const list = entries as IdempotencyEntry[];
  const first = list[0]!;
  return {
    replayed: list.some((entry) => entry.replayed === true),
    firstExecutedAt: first.firstExecutedAt,
    expiresAt: first.expiresAt,
    key: first.key,
    entries: list,
  };
}
