import type { ItemResult } from '../../src/eval/results';
import { normalizeAnswer, score, summarize, summaryTable } from '../../src/eval/score';

describe('scores', () => {
  test('exact match is trimmed equality; the normalised match drops case, punctuation and articles', () => {
    expect(score(' circle. ', 'circle.')).toEqual({ exact: true, match: true });
    expect(score('Circle', 'circle.')).toEqual({ exact: false, match: true });
    expect(score('a red circle moves left.', 'The red circle moves  left')).toEqual({ exact: false, match: true });
    expect(score('square.', 'circle.')).toEqual({ exact: false, match: false });
    expect(normalizeAnswer("It's an apple, isn't it?")).toBe('it s apple isn t it');
  });

  test('summary per type: failed items count as wrong, untyped items go last', () => {
    const r = (id: string, type: string | undefined, exact: boolean | undefined, extra: Partial<ItemResult> = {}): ItemResult => ({
      id,
      type,
      answer: 'x',
      tokens: 3,
      ...(exact === undefined ? {} : { reference: 'y', exact, match: exact }),
      timings: { preprocessMs: 5, visionMs: 10, prefillMs: 20, decodeMs: 30, batchSize: 1 },
      ...extra,
    });
    const results = [
      r('1', 'shape', true),
      r('2', 'shape', false),
      r('3', 'colour', true),
      r('4', 'colour', undefined, { answer: null, tokens: 0, timings: undefined, reference: 'red.', error: { type: 'MediaError', message: 'gone' } }),
      r('5', undefined, undefined),
      r('6', 'colour', undefined, { answer: null, tokens: 0, timings: undefined, error: { type: 'InputError', message: 'too long' } }),
    ];
    const s = summarize(results);
    expect(s.byType.map(([t]) => t)).toEqual(['colour', 'shape', '(none)']);
    expect(Object.fromEntries(s.byType)).toEqual({
      colour: { items: 3, errors: 2, scored: 2, exact: 1, match: 1 },
      shape: { items: 2, errors: 0, scored: 2, exact: 1, match: 1 },
      '(none)': { items: 1, errors: 0, scored: 0, exact: 0, match: 0 },
    });
    expect(s.total).toEqual({ items: 6, errors: 2, scored: 4, exact: 2, match: 2 });
    expect(s.errorKinds).toEqual([['MediaError', 1], ['InputError', 1]]);
    expect([s.meanTokens, s.meanModelMs]).toEqual([3, 60]);
    const table = summaryTable(s);
    expect(table).toContain('| colour | 3 | 2 | 1 | 50.0% | 50.0% |');
    expect(table).toContain('| (none) | 1 | 0 | 0 | n/a | n/a |');
    expect(table).toContain('| **all** | 6 | 2 | 2 | 50.0% | 50.0% |');
    expect(table).toContain('errors: MediaError 1, InputError 1');
  });
});
