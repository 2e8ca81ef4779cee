import { decodeJwt } from 'jose';
import { loadConfig } from '../config';
import { ADMIN_ROLE, signToken } from './token';

const USAGE = `usage: npm run token -- <sub> [--admin] [--role <name>]... [--expires 12h]

Prints a bearer token for the user <sub> (1 to 128 characters), signed with JWT_SECRET
(the development secret when unset outside production).
  --admin          adds the admin role (catalog administration)
  --role <name>    adds a role, such as events:read (the event feed); may be repeated
  --expires <span> lifetime, such as 30m, 12h or 7d (default 12h); at most JWT_MAX_LIFETIME_SECONDS
`;

/** `npm run token -- <sub> [--admin] [--expires 12h]`: prints a bearer token signed with JWT_SECRET. */
async function main(argv: readonly string[]): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE);
    return;
  }
  const args = [...argv];
  const admin = takeFlag(args, '--admin');
  const roles = takeRoles(args);
  const expiresAt = args.indexOf('--expires');
  const expires = expiresAt >= 0 ? args.splice(expiresAt, 2)[1] : '12h';
  const [sub, ...rest] = args;
  if (!sub || sub.startsWith('-') || rest.length > 0 || !expires || sub.length > 128 || roles.includes('')) {
    process.stderr.write(USAGE);
    process.exitCode = 2;
    return;
  }
  const config = loadConfig();
  const token = await signToken({ id: sub, roles: [...(admin ? [ADMIN_ROLE] : []), ...roles] }, config.jwtSecret, expires);
  const { exp = 0, iat = 0 } = decodeJwt(token);
  if (exp - iat > config.jwtMaxLifetimeSeconds) {
    process.stderr.write(
      `--expires ${expires} is longer than JWT_MAX_LIFETIME_SECONDS (${config.jwtMaxLifetimeSeconds} s); the server would refuse it\n`,
    );
    process.exitCode = 2;
    return;
  }
  process.stdout.write(`${token}\n`);
}

function takeRoles(args: string[]): string[] {
  const roles: string[] = [];
  for (let index = args.indexOf('--role'); index >= 0; index = args.indexOf('--role')) {
    roles.push(args.splice(index, 2)[1] ?? '');
  }
  return roles;
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
