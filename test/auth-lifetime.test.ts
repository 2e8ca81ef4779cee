import { SignJWT } from 'jose';
import { type GraphQLResponse, startTestServer, type TestServer } from './support/server';

// Tokens must carry exp, and exp may lie at most JWT_MAX_LIFETIME_SECONDS after iat (after now
// for a token without iat): a token without an end, or with a very distant one, is refused.

const VIEWER = '{ viewer { id } }';
const MAX_LIFETIME = 3_600;
const nowSeconds = () => Math.floor(Date.now() / 1000);

describe('token lifetime', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer({ seed: false, env: { JWT_MAX_LIFETIME_SECONDS: String(MAX_LIFETIME) } });
  });
  afterAll(async () => {
    await server.close();
  });

  function sign(claims: Record<string, unknown>): Promise<string> {
    return new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(new TextEncoder().encode(server.config.jwtSecret));
  }

  function viewer(token: string): Promise<GraphQLResponse<{ viewer: { id: string } | null }>> {
    return server.gql(VIEWER, undefined, { token });
  }

  function expectRefused(response: GraphQLResponse, message: RegExp): void {
    expect(response.status).toBe(401);
    expect(response.body.errors?.map((error) => error.extensions?.code)).toEqual(['UNAUTHENTICATED']);
    expect(response.body.errors?.[0]?.message).toMatch(message);
  }

  it('refuses a token without exp', async () => {
    expectRefused(await viewer(await sign({ sub: 'alice', iat: nowSeconds() })), /exp is required/);
  });

  it('refuses a token without exp or iat', async () => {
    expectRefused(await viewer(await sign({ sub: 'alice' })), /exp is required/);
  });

  it('refuses a token whose exp lies further after iat than the maximum lifetime', async () => {
    const iat = nowSeconds() - 10;
    expectRefused(await viewer(await sign({ sub: 'alice', iat, exp: iat + MAX_LIFETIME + 1 })), /lifetime exceeds 3600 seconds/);
  });

  it('refuses a token without iat whose exp lies further than the maximum lifetime from now', async () => {
    expectRefused(await viewer(await sign({ sub: 'alice', exp: nowSeconds() + MAX_LIFETIME + 120 })), /lifetime exceeds/);
  });

  it('accepts a token whose lifetime is exactly the maximum', async () => {
    const iat = nowSeconds();
    const response = await viewer(await sign({ sub: 'alice', iat, exp: iat + MAX_LIFETIME }));
    expect(response.body.errors).toBeUndefined();
    expect(response.body.data?.viewer?.id).toBe('alice');
  });

  it('accepts a token without iat that ends within the maximum lifetime', async () => {
    const response = await viewer(await sign({ sub: 'bob', exp: nowSeconds() + 600 }));
    expect(response.body.data?.viewer?.id).toBe('bob');
  });

  it('judges a token with iat by exp - iat, not by the time it has left', async () => {
    const iat = nowSeconds() - 2 * MAX_LIFETIME;
    const response = await viewer(await sign({ sub: 'carol', iat, exp: nowSeconds() + 60 }));
    expectRefused(response, /lifetime exceeds/);
  });
});
