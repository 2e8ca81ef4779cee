import {
  buildSchema,
  type GraphQLArgument,
  type GraphQLSchema,
  isEnumType,
  isInputObjectType,
  isInterfaceType,
  isObjectType,
  isSpecifiedDirective,
  isSpecifiedScalarType,
} from 'graphql';
import { buildBaseSchema } from '../src/graphql/schema';

/** The coordinate (`Type.field(arg:)`) of every type, field, argument and enum value without a description. */
function undocumentedElements(schema: GraphQLSchema): string[] {
  const missing: string[] = [];
  const check = (coordinate: string, description: string | null | undefined): void => {
    if (!description?.trim()) missing.push(coordinate);
  };
  const checkArgs = (owner: string, args: readonly GraphQLArgument[]): void => {
    for (const arg of args) check(`${owner}(${arg.name}:)`, arg.description);
  };

  for (const type of Object.values(schema.getTypeMap())) {
    // Introspection types and the built-in scalars are documented by the GraphQL spec, not by us.
    if (type.name.startsWith('__') || isSpecifiedScalarType(type)) continue;
    check(type.name, type.description);
    if (isObjectType(type) || isInterfaceType(type)) {
      for (const field of Object.values(type.getFields())) {
        check(`${type.name}.${field.name}`, field.description);
        checkArgs(`${type.name}.${field.name}`, field.args);
      }
    } else if (isInputObjectType(type)) {
      for (const field of Object.values(type.getFields())) check(`${type.name}.${field.name}`, field.description);
    } else if (isEnumType(type)) {
      for (const value of type.getValues()) check(`${type.name}.${value.name}`, value.description);
    }
  }
  for (const directive of schema.getDirectives().filter((candidate) => !isSpecifiedDirective(candidate))) {
    check(`@${directive.name}`, directive.description);
    checkArgs(`@${directive.name}`, directive.args);
  }
  return missing.sort();
}

describe('undocumentedElements', () => {
  it('reports every kind of element that lacks a description, and nothing built in', () => {
    const schema = buildSchema(`
      type Query { item(id: ID!, "documented" flag: Boolean): Item }
      "documented" type Item { id: ID!  "documented" kind: Kind  "documented" shape(size: Int): String }
      input Filter { name: String }
      enum Kind { A  "documented" B }
      scalar Money
      directive @cached(ttl: Int) on FIELD_DEFINITION
    `);
    expect(undocumentedElements(schema)).toEqual(
      [
        '@cached',
        '@cached(ttl:)',
        'Filter',
        'Filter.name',
        'Item.id',
        'Item.shape(size:)',
        'Kind',
        'Kind.A',
        'Money',
        'Query',
        'Query.item',
        'Query.item(id:)',
      ].sort(),
    );
  });

  it('treats a blank description as missing', () => {
    expect(undocumentedElements(buildSchema('" " type Query { "ok" a: Int }'))).toEqual(['Query']);
  });
});

describe('the served schema', () => {
  it('describes every type, field, argument and enum value', () => {
    const missing = undocumentedElements(buildBaseSchema());
    if (missing.length > 0) throw new Error(`add a description to: ${missing.join(', ')}`);
    expect(missing).toEqual([]);
  });
});
