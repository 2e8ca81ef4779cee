/** What the helpers below read of a GraphQL response: its errors. */
interface WithErrors {
  readonly body: { readonly errors?: readonly { readonly extensions?: Record<string, unknown> }[] };
}

/** The `extensions.code` of a response's first error, if any. */
export function codeOf(response: WithErrors): string | undefined {
  const code = response.body.errors?.[0]?.extensions?.code;
  return code === undefined ? undefined : String(code);
}

/** The `extensions.code` of every error of a response, in order. */
export function codesOf(response: WithErrors): unknown[] {
  return (response.body.errors ?? []).map((error) => error.extensions?.code);
}
