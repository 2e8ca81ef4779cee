import { Writable } from 'node:stream';
import { createLogger } from '../../src/observability/logger';

// The production logger (the one main.ts creates), not a pino built for the test: whatever a
// log call is handed, tokens, Authorization headers and stored outcomes never reach the output.

const SECRET = 'eyJhbGciOiJIUzI1NiJ9.secret-token-value.signature';
const PAYLOAD = '{"order":{"id":"secret-stored-payload"}}';

function captured(): { lines: string[]; sink: Writable } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  return { lines, sink };
}

describe('createLogger', () => {
  it('redacts tokens, Authorization headers and stored outcomes wherever the service logs them', () => {
    const { lines, sink } = captured();
    const logger = createLogger('info', sink);
    logger.info({ req: { method: 'POST', headers: { authorization: `Bearer ${SECRET}` } } }, 'request');
    logger.info({ headers: { authorization: `Bearer ${SECRET}`, 'x-request-id': 'kept-request-id' } }, 'headers');
    logger.info({ authorization: `Bearer ${SECRET}`, token: SECRET }, 'top level');
    logger.info({ sandbox: { token: SECRET }, record: { outcome: PAYLOAD, key: 'kept-key' }, outcome: PAYLOAD }, 'nested');
    logger.child({ userId: 'kept-user' }).warn({ token: SECRET }, 'child');

    expect(lines).toHaveLength(5);
    const output = lines.join('\n');
    expect(output).not.toContain('secret-token-value');
    expect(output).not.toContain('secret-stored-payload');
    expect(output.match(/\[redacted\]/g)).toHaveLength(8);
    for (const kept of ['kept-request-id', 'kept-key', 'kept-user', '"method":"POST"']) expect(output).toContain(kept);
  });

  it('writes nothing below its level', () => {
    const { lines, sink } = captured();
    const logger = createLogger('warn', sink);
    logger.info({ token: SECRET }, 'quiet');
    logger.warn('loud');
    expect(lines.map((line) => (JSON.parse(line) as { msg: string }).msg)).toEqual(['loud']);
  });
});
