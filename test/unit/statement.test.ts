import { asOneStatement, withEvent } from '../../src/events';

describe('asOneStatement', () => {
  it('returns a single write as it is', () => {
    expect(asOneStatement([{ sql: 'insert into a (x) values (?)', params: [1] }])).toEqual({
      sql: 'insert into a (x) values (?)',
      params: [1],
    });
  });

  it('runs every write but the last as a CTE in front of it, with the parameters in the order of their placeholders', () => {
    const one = asOneStatement([
      { sql: 'insert into a (x) values (?)', params: [1] },
      { sql: 'insert into b (x, y) values (?, ?)', params: [2, 3] },
      { sql: 'insert into c (x) values (?)', params: [4] },
    ]);
    expect(one.sql).toBe(
      'with write_1 as (insert into a (x) values (?)), write_2 as (insert into b (x, y) values (?, ?)) insert into c (x) values (?)',
    );
    expect(one.params).toEqual([1, 2, 3, 4]);
  });

  it('refuses an empty list', () => {
    expect(() => asOneStatement([])).toThrow(RangeError);
  });

  it('puts the event first, so that it is written whatever the statement after it returns', () => {
    const event = { type: 'Tested', subjectId: 's-1', occurredAt: new Date(0), data: { n: 1 } };
    const [first, second] = withEvent(event, [{ sql: 'update t set x = ?', params: [5] }]);
    expect(first?.sql).toMatch(/^insert into outbox_events /);
    expect(first?.params.slice(1)).toEqual(['Tested', new Date(0), '{"n":1}']);
    expect(second).toEqual({ sql: 'update t set x = ?', params: [5] });
  });
});
