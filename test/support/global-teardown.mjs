export default async function globalTeardown() {
  const pg = globalThis.__TEST_POSTGRES__;
  if (pg) await pg.stop();
}
