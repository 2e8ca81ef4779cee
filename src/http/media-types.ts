import { parse as parseContentType } from 'content-type';
import Negotiator from 'negotiator';

/** The response media types of the GraphQL-over-HTTP specification, written as Apollo Server writes them. */
export const MEDIA_TYPES = {
  json: 'application/json; charset=utf-8',
  graphqlResponse: 'application/graphql-response+json; charset=utf-8',
} as const;

/**
 * The media type Apollo will answer with, or null when the client accepts neither (406). The
 * choice is made with `negotiator`, the library Apollo Server negotiates with, so both agree.
 */
export function responseMediaType(accept: string | undefined): string | null {
  // No Accept: application/json, the legacy default that Apollo keeps (see docs/graphql-over-http.md).
  if (!accept) return MEDIA_TYPES.json;
  return negotiate(accept, [MEDIA_TYPES.json, MEDIA_TYPES.graphqlResponse]);
}

/** Apollo's own rule for serving its landing page: text/html strictly preferred over both JSON types. */
export function prefersHtml(accept: string | undefined): boolean {
  return !!accept && negotiate(accept, [MEDIA_TYPES.json, MEDIA_TYPES.graphqlResponse, 'text/html']) === 'text/html';
}

/**
 * Why a POST body's Content-Type is refused, or null when it is application/json in UTF-8: Fastify
 * would decode any declared charset as UTF-8, and other types were refused by Fastify or by Apollo's
 * CSRF check rather than with a plain 415.
 */
export function requestContentTypeProblem(contentType: string | undefined): string | null {
  if (!contentType) return 'A POST request needs Content-Type: application/json';
  const { type, parameters } = parseContentType(contentType);
  if (type !== 'application/json') return `Content-Type ${contentType} is not supported: send application/json`;
  const charset = parameters.charset?.toLowerCase();
  if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
    return `Request bodies must be UTF-8, got charset=${charset}`;
  }
  return null;
}

/** `type/subtype` of a Content-Type header value, lower-cased; null when there is none. */
export function essenceOf(contentType: unknown): string | null {
  return typeof contentType === 'string' ? parseContentType(contentType).type || null : null;
}

function negotiate(accept: string, candidates: string[]): string | null {
  return new Negotiator({ headers: { accept } }).mediaType(candidates) ?? null;
}
