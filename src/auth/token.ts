import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { UnauthenticatedError } from '../errors';

/** The authenticated caller. */
export interface Viewer {
  readonly id: string;
  readonly roles: readonly string[];
}

export const ADMIN_ROLE = 'admin';

/** Whether the viewer may administer the catalog. */
export function isAdmin(viewer: Viewer | null): boolean {
  return viewer?.roles.includes(ADMIN_ROLE) ?? false;
}

/** Creates an HS256 bearer token for `viewer`. */
export async function signToken(viewer: Viewer, secret: string, expiresIn = '12h'): Promise<string> {
  return new SignJWT({ roles: [...viewer.roles] })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(viewer.id)
    .setIssuedAt()
    .setExpirationTime(expiresIn)
    .sign(secretKey(secret));
}

/** What a bearer token must satisfy besides its signature. */
export interface TokenPolicy {
  /** The HS256 key (`JWT_SECRET`). */
  readonly secret: string;
  /** `JWT_MAX_LIFETIME_SECONDS`: the longest `exp - iat` accepted (`exp - now` for a token without `iat`). */
  readonly maxLifetimeSeconds: number;
}

/**
 * Verifies an HS256 token and returns its viewer. Any other algorithm (`none` included), a bad
 * signature, a missing or past `exp`, a lifetime over the policy's maximum or malformed claims
 * raise {@link UnauthenticatedError}.
 */
export async function verifyToken(token: string, policy: TokenPolicy): Promise<Viewer> {
  return (await verifyClaims(token, policy)).viewer;
}

/** Default number of accepted tokens a {@link TokenVerifier} remembers. */
export const VERIFIED_TOKENS = 10_000;

/**
 * {@link verifyToken} for a server: an accepted token is remembered, keyed by its whole text
 * (signature included), until its `exp`, so that a client sending the same token again is not
 * verified again. Refused tokens are not remembered. When full, the oldest entry goes.
 */
export class TokenVerifier {
  private readonly accepted = new Map<string, { readonly viewer: Viewer; readonly exp: number }>();

  constructor(
    private readonly policy: TokenPolicy,
    private readonly maxEntries = VERIFIED_TOKENS,
  ) {}

  async verify(token: string): Promise<Viewer> {
    const known = this.accepted.get(token);
    // jose refuses a token once now >= exp; a remembered one ends at the same second.
    if (known && Date.now() / 1000 < known.exp) return known.viewer;
    if (known) this.accepted.delete(token);
    const verified = await verifyClaims(token, this.policy);
    if (this.accepted.size >= this.maxEntries) {
      const oldest = this.accepted.keys().next();
      if (!oldest.done) this.accepted.delete(oldest.value);
    }
    this.accepted.set(token, verified);
    return verified.viewer;
  }

  /** Tokens remembered now. */
  get size(): number {
    return this.accepted.size;
  }
}

async function verifyClaims(token: string, policy: TokenPolicy): Promise<{ viewer: Viewer; exp: number }> {
  let payload: Record<string, unknown>;
  try {
    ({ payload } = await jwtVerify(token, secretKey(policy.secret), { algorithms: ['HS256'], requiredClaims: ['exp'] }));
  } catch (error) {
    throw new UnauthenticatedError(describe(error));
  }
  const { sub, roles, exp, iat } = payload;
  // jose has checked that exp is present and a number.
  const expiresAt = exp as number;
  // A token that never expires, or lives for years, is a credential that cannot be withdrawn
  // short of rotating the secret. Without iat the lifetime left is what counts.
  const issuedAt = typeof iat === 'number' ? iat : Math.floor(Date.now() / 1000);
  if (expiresAt - issuedAt > policy.maxLifetimeSeconds) {
    throw new UnauthenticatedError(`Invalid token: its lifetime exceeds ${policy.maxLifetimeSeconds} seconds`);
  }
  if (typeof sub !== 'string' || sub.length === 0 || sub.length > 128 || sub.includes('\u0000')) {
    throw new UnauthenticatedError('Invalid token: sub must be a string of 1 to 128 characters, without U+0000');
  }
  if (roles !== undefined && !(Array.isArray(roles) && roles.every((role) => typeof role === 'string'))) {
    throw new UnauthenticatedError('Invalid token: roles must be an array of strings');
  }
  // Frozen: a remembered viewer is shared by every request that sends its token.
  const viewer: Viewer = Object.freeze({ id: sub, roles: Object.freeze([...((roles as string[] | undefined) ?? [])]) });
  return { viewer, exp: expiresAt };
}

/** Reads a bearer token from an Authorization header value; undefined when absent. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined || header === '') return undefined;
  const match = /^Bearer +([A-Za-z0-9\-_.~+/]+=*) *$/i.exec(header);
  if (!match?.[1]) throw new UnauthenticatedError('Invalid Authorization header: expected "Bearer <token>"');
  return match[1];
}

const keys = new Map<string, Uint8Array>();

function secretKey(secret: string): Uint8Array {
  let key = keys.get(secret);
  if (!key) {
    key = new TextEncoder().encode(secret);
    keys.set(secret, key);
  }
  return key;
}

function describe(error: unknown): string {
  if (error instanceof joseErrors.JWTExpired) return 'Token expired';
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return 'Invalid token: only HS256 is accepted';
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return 'Invalid token: bad signature';
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    return error.claim === 'exp' && error.reason === 'missing' ? 'Invalid token: exp is required' : `Invalid token: ${error.message}`;
  }
  return 'Invalid token';
}
