import net from 'node:net';

// A TCP proxy in front of PostgreSQL that can drop one connection at an exact point of the
// protocol (just before or just after a given simple query), which a real outage only hits by
// luck: the moment a transaction begins, or the moment its COMMIT is on the wire.

/** Where to cut: the next simple query whose text matches `query`, before it reaches PostgreSQL or right after. */
export interface Fault {
  readonly query: RegExp;
  /** `before`: PostgreSQL never sees the query. `after`: it gets the query, its answer never reaches the client. */
  readonly when: 'before' | 'after';
}

export interface FaultProxy {
  readonly port: number;
  /** `databaseUrl` routed through the proxy. */
  url(databaseUrl: string): string;
  /** Arms one fault; the promise settles when it has fired. */
  arm(fault: Fault): Promise<void>;
  close(): Promise<void>;
}

// Protocol codes of the untyped messages a client may open with before its startup message.
const SSL_REQUEST = 80_877_103;
const GSSENC_REQUEST = 80_877_104;

/** Splits the client's byte stream into whole protocol messages. */
class FrontendMessages {
  private buffered = Buffer.alloc(0);
  private typed = false;

  /** The whole messages completed by `chunk`. */
  push(chunk: Buffer): { type: string | undefined; bytes: Buffer }[] {
    this.buffered = Buffer.concat([this.buffered, chunk]);
    const messages: { type: string | undefined; bytes: Buffer }[] = [];
    for (;;) {
      const header = this.typed ? 5 : 4;
      if (this.buffered.length < header) break;
      const length = this.buffered.readInt32BE(header - 4) + (this.typed ? 1 : 0);
      if (this.buffered.length < length) break;
      const bytes = this.buffered.subarray(0, length);
      this.buffered = this.buffered.subarray(length);
      if (this.typed) {
        messages.push({ type: String.fromCharCode(bytes[0] as number), bytes });
      } else {
        const code = bytes.readInt32BE(4);
        this.typed = code !== SSL_REQUEST && code !== GSSENC_REQUEST;
        messages.push({ type: undefined, bytes });
      }
    }
    return messages;
  }
}

/** The text of a simple-query ('Q') message. */
function queryText(bytes: Buffer): string {
  return bytes.subarray(5, bytes.length - 1).toString('utf8');
}

/** Starts a proxy on a free port of 127.0.0.1 forwarding to `target` (a PostgreSQL URL's host and port). */
export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const upstream = new URL(target);
  const sockets = new Set<net.Socket>();
  let armed: { fault: Fault; fired: () => void } | undefined;

  const server = net.createServer((client) => {
    const backend = net.connect({ host: upstream.hostname, port: Number(upstream.port || 5432) });
    sockets.add(client).add(backend);
    const drop = () => {
      client.destroy();
      backend.destroy();
    };
    client.on('close', () => {
      sockets.delete(client);
      backend.end();
    });
    backend.on('close', () => {
      sockets.delete(backend);
      client.destroy();
    });
    client.on('error', drop);
    backend.on('error', drop);
    backend.on('data', (chunk: Buffer) => {
      if (!client.destroyed) client.write(chunk);
    });
    const messages = new FrontendMessages();
    client.on('data', (chunk: Buffer) => {
      for (const message of messages.push(chunk)) {
        const trigger = armed;
        if (trigger && message.type === 'Q' && trigger.fault.query.test(queryText(message.bytes))) {
          armed = undefined;
          if (trigger.fault.when === 'after') {
            // PostgreSQL reads and runs the query before it sees the end of the stream; its answer
            // goes nowhere because the client side is already gone.
            client.destroy();
            backend.end(message.bytes);
          } else {
            drop();
          }
          trigger.fired();
          return;
        }
        backend.write(message.bytes);
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  return {
    port,
    url: (databaseUrl) => {
      const routed = new URL(databaseUrl);
      routed.hostname = '127.0.0.1';
      routed.port = String(port);
      return routed.toString();
    },
    arm: (fault) =>
      new Promise<void>((resolve) => {
        armed = { fault, fired: resolve };
      }),
    close: async () => {
      armed = undefined;
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
