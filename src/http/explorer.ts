import { randomUUID } from 'node:crypto';
import { accessSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { ApolloServerPlugin } from '@apollo/server';
import { ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { ApolloServerPluginLandingPageLocalDefault } from '@apollo/server/plugin/landingPage/default';
import type { FastifyInstance } from 'fastify';
import type { ExplorerKind } from '../config';

/** What the development landing page opens with. */
export interface SandboxOptions {
  /** A development bearer token put in the Authorization header; never used in production. */
  readonly token?: string;
  /** A product id for the example variables. */
  readonly exampleProductId?: string;
}

/**
 * The ready operations the Sandbox opens with, in the order a newcomer would run them. The
 * Sandbox runs the operation under the cursor; all of them share the pre-filled variables.
 */
export const SANDBOX_DOCUMENT = `# 1. Browse the catalog (public).
query Products {
  products(first: 20) {
    edges { node { id sku name priceCents currency stock } }
    pageInfo { hasNextPage endCursor }
  }
}

# 2. Place an order. The Idempotency-Key header (see Headers) makes it idempotent.
# 3. Run it again: the response is the first one, replayed (extensions.idempotency
#    says replayed: true) and no second order is created.
mutation CreateOrder($input: CreateOrderInput!) {
  createOrder(input: $input) {
    order {
      id
      status
      totalCents
      currency
      createdAt
      lines { quantity unitPriceCents lineTotalCents product { sku name } }
    }
  }
}

# 4. Look at the stored record of that key ($key is the same key as the header).
query IdempotencyRecord($key: IdempotencyKey!) {
  idempotencyRecord(key: $key) { key operation outcome createdAt expiresAt }
}

# 5. Your orders, newest first.
query MyOrders {
  orders(first: 10) {
    edges { node { id status totalCents currency createdAt lines { quantity product { name } } } }
  }
}
`;

/** What either explorer opens with: the ready operations, their variables and headers. */
interface InitialState {
  readonly document: string;
  readonly variables: Record<string, unknown>;
  readonly headers: Record<string, string>;
}

function initialState(options: SandboxOptions, production: boolean): InitialState {
  // One key per server start: running the example twice shows the replay of the first run.
  const key = `explorer-${randomUUID()}`;
  const headers: Record<string, string> = { 'Idempotency-Key': key };
  // A token is a credential: a production configuration never embeds one in a page.
  if (options.token && !production) headers.Authorization = `Bearer ${options.token}`;
  return {
    document: SANDBOX_DOCUMENT,
    variables: {
      input: { lines: [{ productId: options.exampleProductId ?? '<product id>', quantity: 1 }], note: 'first order' },
      key,
    },
    headers,
  };
}

/** How the explorer is set up: which one, and whether the configuration is production's. */
export interface ExplorerOptions extends SandboxOptions {
  readonly kind: ExplorerKind;
  readonly production: boolean;
}

/** The landing-page plugin of the configured explorer (GraphiQL, Apollo Sandbox, or none). */
export function explorerLandingPage(options: ExplorerOptions): ApolloServerPlugin {
  switch (options.kind) {
    case 'off':
      return ApolloServerPluginLandingPageDisabled();
    case 'sandbox':
      return sandboxLandingPage(initialState(options, options.production));
    case 'graphiql':
      return graphiqlLandingPage(initialState(options, options.production));
    default:
      throw new Error(`unknown explorer ${JSON.stringify(options.kind satisfies never)}`);
  }
}

/** The Apollo Sandbox page: it loads its code from Apollo's CDN, so it needs internet access. */
function sandboxLandingPage(state: InitialState): ApolloServerPlugin {
  return ApolloServerPluginLandingPageLocalDefault({
    embed: { runTelemetry: false, initialState: { pollForSchemaUpdates: false } },
    includeCookies: false,
    ...state,
  });
}

/** Where the GraphiQL page's scripts and styles are served from. */
export const EXPLORER_ASSETS_PATH = '/explorer';

/** The packaged files the GraphiQL page loads, by the name it loads them under. */
const PACKAGED_ASSETS: Record<string, { readonly pkg: string; readonly file: string; readonly type: string }> = {
  'react.js': { pkg: 'react', file: 'umd/react.production.min.js', type: 'text/javascript; charset=utf-8' },
  'react-dom.js': { pkg: 'react-dom', file: 'umd/react-dom.production.min.js', type: 'text/javascript; charset=utf-8' },
  'graphiql.js': { pkg: 'graphiql', file: 'graphiql.min.js', type: 'text/javascript; charset=utf-8' },
  'graphiql.css': { pkg: 'graphiql', file: 'graphiql.min.css', type: 'text/css; charset=utf-8' },
};

/** Renders GraphiQL from the JSON configuration the page carries; no inline script. */
const START_SCRIPT = `(function () {
  var config = JSON.parse(document.getElementById('explorer-config').textContent);
  var fetcher = GraphiQL.createFetcher({ url: config.endpoint });
  ReactDOM.createRoot(document.getElementById('graphiql')).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      query: config.document,
      variables: JSON.stringify(config.variables, null, 2),
      headers: JSON.stringify(config.headers, null, 2),
      shouldPersistHeaders: false,
      defaultEditorToolsVisibility: 'headers',
    }),
  );
})();
`;

/**
 * Serves GraphiQL's files from the installed graphiql, react and react-dom packages, so the page
 * works with no internet access. They are development dependencies: without them the server
 * refuses to start with this explorer.
 */
export function registerExplorerAssets(app: FastifyInstance, kind: ExplorerKind): void {
  if (kind !== 'graphiql') return;
  const files = new Map<string, { path: string; type: string }>();
  for (const [name, asset] of Object.entries(PACKAGED_ASSETS)) {
    let resolved: string;
    try {
      // The UMD files are not in the packages' exports: they are found beside their package.json.
      resolved = path.join(path.dirname(require.resolve(`${asset.pkg}/package.json`)), asset.file);
      accessSync(resolved);
    } catch {
      throw new Error(
        `GRAPHQL_EXPLORER=graphiql needs the packages graphiql, react and react-dom (development dependencies; ${asset.pkg}/${asset.file} is missing): run npm install, or set GRAPHQL_EXPLORER=off`,
      );
    }
    files.set(name, { path: resolved, type: asset.type });
  }
  const cache = new Map<string, Buffer>();
  app.get<{ Params: { file: string } }>(`${EXPLORER_ASSETS_PATH}/:file`, async (request, reply) => {
    const { file } = request.params;
    if (file === 'start.js') return reply.type('text/javascript; charset=utf-8').send(START_SCRIPT);
    const asset = files.get(file);
    if (!asset) return reply.code(404).type('text/plain; charset=utf-8').send('Not found');
    let body = cache.get(file);
    if (!body) {
      body = await readFile(asset.path);
      cache.set(file, body);
    }
    return reply.type(asset.type).header('cache-control', 'public, max-age=3600').send(body);
  });
}

/** JSON that is safe inside a script element: no `</script>` or comment opener can end it. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c');
}

/** The GraphiQL page, pre-filled like the Sandbox; its assets come from {@link registerExplorerAssets}. */
function graphiqlLandingPage(state: InitialState): ApolloServerPlugin {
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Orders API · GraphiQL</title>
<link rel="stylesheet" href="${EXPLORER_ASSETS_PATH}/graphiql.css">
</head>
<body style="margin:0">
<div id="graphiql" style="height:100vh">Loading GraphiQL…</div>
<script id="explorer-config" type="application/json">${scriptJson({ endpoint: '/graphql', ...state })}</script>
<script src="${EXPLORER_ASSETS_PATH}/react.js"></script>
<script src="${EXPLORER_ASSETS_PATH}/react-dom.js"></script>
<script src="${EXPLORER_ASSETS_PATH}/graphiql.js"></script>
<script src="${EXPLORER_ASSETS_PATH}/start.js"></script>
</body>
</html>
`;
  return {
    async serverWillStart() {
      return {
        async renderLandingPage() {
          return { html };
        },
      };
    },
  };
}
