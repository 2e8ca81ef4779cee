import { loadConfig } from '../config';
import { ADMIN_ROLE, signToken } from './token';

/** `npm run token -- <sub> [--admin] [--expires 12h]`: prints a bearer token signed with JWT_SECRET. */
async function main(argv: readonly string[]): Promise<void> {
  const args = [...argv];
  const admin = takeFlag(args, '--admin');
  const expiresAt = args.indexOf('--expires');
  const expires = expiresAt >= 0 ? args.splice(expiresAt, 2)[1] : '12h';
  const [sub, ...rest] = args;
  if (!sub || rest.length > 0 || !expires || sub.length > 128) {
    process.stderr.write('usage: npm run token -- <sub> [--admin] [--expires 12h]\n');
    process.exitCode = 2;
    return;
  }
  const config = loadConfig();
  const token = await signToken({ id: sub, roles: admin ? [ADMIN_ROLE] : [] }, config.jwtSecret, expires);
  process.stdout.write(`${token}\n`);
}

function takeFlag(args: string[], flag: string): boolean {
  const index = args.indexOf(flag);
  if (index < 0) return false;
  args.splice(index, 1);
  return true;
}

main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
