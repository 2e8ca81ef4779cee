/**
 * The length of a string in characters as the schema's limits count them: Unicode code points,
 * so an emoji is one character (String.length counts UTF-16 units, two for most emoji).
 */
export function characterCount(value: string): number {
  let count = 0;
  for (const _ of value) count++;
  return count;
}
