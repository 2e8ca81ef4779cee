import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * What the proxy does to the first createOrder request; later requests pass through.
 * - `drop-response`: forwards it, waits for the server's whole response (the order committed),
 *   then destroys the client's connection without sending a byte: a lost response.
 * - `answer-503`: answers 503 without forwarding it: a failing gateway.
 * - `answer-429`: answers 429 with `Retry-After: 1` and a RATE_LIMITED GraphQL error without forwarding it.
 * - `reset-mid-request`: forwards it and resets the client's connection (TCP RST) while the server
 *   is still working on it.
 * - `delay-past-timeout`: forwards it, holds the server's whole response until the client has
 *   given up waiting and closed the connection, and never sends it.
 */
export type Fault = 'drop-response' | 'answer-503' | 'answer-429' | 'reset-mid-request' | 'delay-past-timeout' | 'none';

/** One request the proxy received. */
export interface ProxiedRequest {
  readonly operation: 'createOrder' | 'other';
  /** The `key` variable the client sent, else its Idempotency-Key header, if any. */
  readonly key: unknown;
  /** Whether the fault was applied to this request. */
  readonly faulted: boolean;
  /** The server's `idempotent-replayed` header, when the request reached the server. */
  readonly replayedHeader?: string;
  /** The server's response body, when the request reached the server. */
  readonly answer?: string;
}

/** A local HTTP proxy in front of a GraphQL server that injects one real network fault. */
export interface FaultyProxy {
  readonly url: string;
  readonly requests: readonly ProxiedRequest[];
  close(): Promise<void>;
}

// Hop-by-hop headers, and the length that is set again from the buffered body.
const NOT_FORWARDED = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length']);

/** Starts a proxy on 127.0.0.1 (a free port) in front of `target` (a full GraphQL URL). */
export async function startFaultyProxy(target: string, fault: Fault): Promise<FaultyProxy> {
  const upstream = new URL(target);
  const requests: ProxiedRequest[] = [];
  let faultApplied = fault === 'none';

  const server = http.createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      if (!response.headersSent) response.writeHead(502, { 'content-type': 'text/plain' }).end(`proxy error: ${String(error)}`);
      else response.destroy();
    });
  });

  async function handle(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const body = await readAll(request);
    const { query, variables } = parseGraphQL(body);
    const operation = /\bcreateOrder\s*\(/.test(query) ? 'createOrder' : 'other';
    const faulted = operation === 'createOrder' && !faultApplied;
    if (faulted) faultApplied = true;
    const key = variables.key ?? headerValue(request.headers['idempotency-key']);

    if (faulted && fault === 'answer-503') {
      requests.push({ operation, key, faulted });
      response.writeHead(503, { 'content-type': 'text/plain' }).end('upstream unavailable');
      return;
    }
    if (faulted && fault === 'answer-429') {
      requests.push({ operation, key, faulted });
      const error = { message: 'Rate limit exceeded; retry after 1 s', extensions: { code: 'RATE_LIMITED', retryAfterSeconds: 1 } };
      response
        .writeHead(429, { 'content-type': 'application/graphql-response+json', 'retry-after': '1' })
        .end(JSON.stringify({ errors: [error] }));
      return;
    }
    const clientGone = new Promise<void>((resolve) => request.socket.once('close', () => resolve()));
    const answering = forward(upstream, request, body);
    // The server has the request (it is forwarded whole); the client's connection is reset under it.
    if (faulted && fault === 'reset-mid-request') request.socket.resetAndDestroy();
    const answer = await answering;
    const replayedHeader = headerValue(answer.headers['idempotent-replayed']);
    requests.push({ operation, key, faulted, replayedHeader, answer: answer.body.toString('utf8') });
    if (faulted) {
      // The server committed and answered; the client never hears of it.
      if (fault === 'delay-past-timeout') await clientGone;
      request.socket.destroy();
      return;
    }
    const headers = Object.fromEntries(Object.entries(answer.headers).filter(([name]) => !NOT_FORWARDED.has(name)));
    response.writeHead(answer.status, { ...headers, 'content-length': answer.body.length }).end(answer.body);
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}${upstream.pathname}`,
    requests,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  return Buffer.concat(chunks);
}

function parseGraphQL(body: Buffer): { query: string; variables: Record<string, unknown> } {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { query?: unknown; variables?: unknown };
    return {
      query: typeof parsed.query === 'string' ? parsed.query : '',
      variables: typeof parsed.variables === 'object' && parsed.variables !== null ? (parsed.variables as Record<string, unknown>) : {},
    };
  } catch {
    return { query: '', variables: {} };
  }
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

/** Sends the request to the server and buffers its whole response. */
function forward(
  upstream: URL,
  request: http.IncomingMessage,
  body: Buffer,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const outgoing = http.request(
      {
        host: upstream.hostname,
        port: upstream.port,
        path: request.url,
        method: request.method,
        headers: { ...request.headers, host: upstream.host },
      },
      (answer) => {
        readAll(answer).then(
          (answerBody) => resolve({ status: answer.statusCode ?? 502, headers: answer.headers, body: answerBody }),
          reject,
        );
      },
    );
    outgoing.on('error', reject);
    outgoing.end(body);
  });
}
