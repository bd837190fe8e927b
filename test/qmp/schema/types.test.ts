/** The QAPI type DSL's introspection of unions and recursive (lazy) types. */
import { describe, expect, it } from 'vitest';
import { introspectSchema } from '../../../src/qmp/schema/introspect.js';
import { command } from '../../../src/qmp/schema/command.js';
import { alternate, enumType, lazy, type QType, str, struct, union } from '../../../src/qmp/schema/types.js';

describe('union introspection', () => {
  it("lists tag values without a variant after the declared ones, as QEMU's empty object", () => {
    const Mode = enumType('Mode', ['none', 'hash', 'known_hosts']);
    const U = union('U', { mode: Mode }, 'mode', { hash: struct('H', { hash: str }) });
    const schema = introspectSchema([command('c', { args: U })], []);
    const u = schema.find((e) => e['tag'] === 'mode')!;
    expect(u['variants']).toEqual([
      { case: 'hash', type: expect.not.stringMatching(/^0$/) },
      { case: 'none', type: '0' },
      { case: 'known_hosts', type: '0' },
    ]);
  });
});

describe('lazy', () => {
  interface Node {
    name: string;
    child?: Node | string;
  }
  const Ref: QType<Node | string> = alternate('Ref', [lazy((): QType<Node> => Tree), str] as const);
  const Tree: QType<Node> = struct('Tree', { name: str, '*child': Ref }) as QType<Node>;

  it('visits a recursive type to any depth, with full names', () => {
    expect(Tree.visit({ name: 'a', child: { name: 'b', child: 'c' } }, [])).toEqual({ name: 'a', child: { name: 'b', child: 'c' } });
    expect(() => Tree.visit({ name: 'a', child: { name: 'b', child: { name: 1 } } }, [])).toThrow("Invalid parameter type for 'child.child.name', expected: string");
  });

  it('introspects a recursive type once, pointing back at itself', () => {
    const schema = introspectSchema([command('c', { args: Tree })], []);
    const tree = schema.find((e) => e['name'] === (schema.find((x) => x['name'] === 'c')!['arg-type'] as string))!;
    const ref = schema.find((e) => e['name'] === (tree['members'] as Array<{ type: string }>)[1]!.type)!;
    expect(ref['meta-type']).toBe('alternate');
    expect(ref['members']).toEqual([{ type: tree['name'] }, { type: 'str' }]);
  });
});
