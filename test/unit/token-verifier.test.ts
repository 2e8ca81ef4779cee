import { signToken, TokenVerifier } from '../../src/auth/token';
import { UnauthenticatedError } from '../../src/errors';

const POLICY = { secret: 'unit-test-secret-0123456789-0123456789', maxLifetimeSeconds: 86_400 };

describe('TokenVerifier', () => {
  afterEach(() => {
    jest.useRealTimers();
  });

  it('returns the viewer of a valid token, and the same viewer when the token comes again', async () => {
    const verifier = new TokenVerifier(POLICY);
    const token = await signToken({ id: 'alice', roles: ['admin'] }, POLICY.secret);
    const first = await verifier.verify(token);
    expect(first).toEqual({ id: 'alice', roles: ['admin'] });
    expect(await verifier.verify(token)).toEqual(first);
    expect(Object.isFrozen(first) && Object.isFrozen(first.roles)).toBe(true);
  });

  it('refuses a token it accepted once the token has expired', async () => {
    // Only Date is faked: jose and the verifier read the clock through it.
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'setTimeout', 'setInterval', 'queueMicrotask', 'performance'] });
    const start = Date.parse('2030-01-01T00:00:00Z');
    jest.setSystemTime(start);
    const verifier = new TokenVerifier(POLICY);
    const token = await signToken({ id: 'bob', roles: [] }, POLICY.secret, '60s');
    expect((await verifier.verify(token)).id).toBe('bob');
    jest.setSystemTime(start + 59_000);
    expect((await verifier.verify(token)).id).toBe('bob');
    jest.setSystemTime(start + 60_000);
    await expect(verifier.verify(token)).rejects.toThrow(new UnauthenticatedError('Token expired'));
  });

  it('refuses a token with a bad signature every time', async () => {
    const verifier = new TokenVerifier(POLICY);
    const token = await signToken({ id: 'carol', roles: [] }, 'another-secret-0123456789-0123456789');
    await expect(verifier.verify(token)).rejects.toThrow(/bad signature/);
    await expect(verifier.verify(token)).rejects.toThrow(/bad signature/);
    expect(verifier.size).toBe(0);
  });

  it('remembers at most its bound of tokens', async () => {
    const verifier = new TokenVerifier(POLICY, 3);
    const tokens = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((id) => signToken({ id, roles: [] }, POLICY.secret)));
    const viewers = [];
    for (const token of tokens) viewers.push((await verifier.verify(token)).id);
    expect(viewers).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(verifier.size).toBe(3);
    expect((await verifier.verify(tokens[0] as string)).id).toBe('a');
    expect(verifier.size).toBe(3);
  });
});
