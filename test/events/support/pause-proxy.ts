import net from 'node:net';

/** A TCP proxy whose client-to-server direction can be held: held bytes are never delivered. */
export interface PauseProxy {
  readonly port: number;
  /** From now on, what clients send is kept back. */
  hold(): void;
  /** Bytes kept back since {@link hold}. */
  heldBytes(): number;
  close(): Promise<void>;
}

export async function startPauseProxy(upstreamPort: number): Promise<PauseProxy> {
  let holding = false;
  let held = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(upstreamPort, '127.0.0.1');
    sockets.add(client).add(upstream);
    client.on('data', (chunk) => {
      if (holding) held += chunk.length;
      else upstream.write(chunk);
    });
    upstream.pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : 0,
    hold: () => {
      holding = true;
    },
    heldBytes: () => held,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
