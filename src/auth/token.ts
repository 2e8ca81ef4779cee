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
  let payload: Record<string, unknown>;
  try {
    ({ payload } = await jwtVerify(token, secretKey(policy.secret), { algorithms: ['HS256'], requiredClaims: ['exp'] }));
  } catch (error) {
    throw new UnauthenticatedError(describe(error));
  }
  const { sub, roles, exp, iat } = payload;
  // A token that never expires, or lives for years, is a credential that cannot be withdrawn
  // short of rotating the secret. Without iat the lifetime left is what counts.
  const issuedAt = typeof iat === 'number' ? iat : Math.floor(Date.now() / 1000);
  if (typeof exp === 'number' && exp - issuedAt > policy.maxLifetimeSeconds) {
    throw new UnauthenticatedError(`Invalid token: its lifetime exceeds ${policy.maxLifetimeSeconds} seconds`);
  }
  if (typeof sub !== 'string' || sub.length === 0 || sub.length > 128 || sub.includes('\u0000')) {
    throw new UnauthenticatedError('Invalid token: sub must be a string of 1 to 128 characters, without U+0000');
  }
  if (roles !== undefined && !(Array.isArray(roles) && roles.every((role) => typeof role === 'string'))) {
    throw new UnauthenticatedError('Invalid token: roles must be an array of strings');
  }
  return { id: sub, roles: (roles as string[] | undefined) ?? [] };
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
