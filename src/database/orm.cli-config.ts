import { loadConfig } from '../config';
import { createOrmConfig } from './orm.config';

/** Configuration for the `mikro-orm` CLI: the database named by `DATABASE_URL`. */
export default (() => {
  const config = loadConfig();
  if (!config.databaseUrl) {
    throw new Error(
      'DATABASE_URL must be set for the mikro-orm CLI (for the embedded database: the URL `npm start` logs, with its fixed local password `postgres` in place of `redacted`)',
    );
  }
  return createOrmConfig({ clientUrl: config.databaseUrl });
})();
