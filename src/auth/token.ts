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

/**
 * Verifies an HS256 token and returns its viewer. Any other algorithm (`none` included), a bad
 * signature, an expired token or malformed claims raise {@link UnauthenticatedError}.
 */
export async function verifyToken(token: string, secret: string): Promise<Viewer> {
  let payload: Record<string, unknown>;
  try {
    ({ payload } = await jwtVerify(token, secretKey(secret), { algorithms: ['HS256'] }));
  } catch (error) {
    throw new UnauthenticatedError(describe(error));
  }
  const { sub, roles } = payload;
  if (typeof sub !== 'string' || sub.length === 0 || sub.length > 128) {
    throw new UnauthenticatedError('Invalid token: sub must be a string of 1 to 128 characters');
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
  if (error instanceof joseErrors.JWTClaimValidationFailed) return `Invalid token: ${error.message}`;
  return 'Invalid token';
}
