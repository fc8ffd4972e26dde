/** Streamed text never splits a UTF-8 character; stop strings follow transformers' overlap rule. */
import { StopStringMatcher, TextStreamer, TokenDecoder } from '../../src/generation/streamer';

/** One token per byte, decoded like a byte-fallback tokenizer (invalid or unfinished bytes → U+FFFD). */
const bytes: TokenDecoder = {
  decode: (ids) => new TextDecoder('utf-8').decode(Uint8Array.from(ids)),
};

/** Tokens are whole strings from a table. */
function table(pieces: string[]): TokenDecoder {
  return { decode: (ids) => ids.map((i) => pieces[i]).join('') };
}

describe('TextStreamer', () => {
  test('pieces never end inside a multi-byte character and join to the full text', () => {
    const text = 'héllo 你好 🎬 ok';
    const ids = Array.from(Buffer.from(text, 'utf8'));
    const streamer = new TextStreamer(bytes);
    const pieces = ids.map((id) => streamer.put([id]));
    expect(pieces.filter((p) => p !== '')).toEqual([...text]); // one piece per character, when its last byte arrives
    expect(streamer.end()).toBe('');
    expect(pieces.join('')).toBe(text);
  });

  test('end() flushes an unfinished character as U+FFFD', () => {
    const streamer = new TextStreamer(bytes);
    expect(streamer.put([0x61, 0xe4, 0xbd])).toBe('');
    expect(streamer.end()).toBe('a\uFFFD');
  });

  test('skipSpecialTokens is passed to the tokenizer (default true)', () => {
    const seen: Array<boolean | undefined> = [];
    const tok: TokenDecoder = {
      decode: (ids, opts) => {
        seen.push(opts?.skipSpecialTokens);
        return ids.join(',');
      },
    };
    new TextStreamer(tok).put([1]);
    new TextStreamer(tok, false).put([1]);
    expect(seen).toEqual([true, false]);
  });
});

describe('StopStringMatcher', () => {
  const tok = table(['st', 'op', 'stop', 'at', 'opera', 'las', 'topper', 's', 'to', 'pped', 'x']);
  const run = (ids: number[]) => {
    const m = new StopStringMatcher(tok, ['stop']);
    return ids.map((id) => m.push(id));
  };

  test.each([
    [[0, 1], 1], // st|op
    [[2], 0], // stop
    [[0, 4], 1], // st|opera (overhang past the end)
    [[5, 6], 1], // las|topper (overhang before the start)
    [[7, 8, 9], 2], // s|to|pped
    [[10, 0, 1], 2],
  ])('%j stops at token %i', (ids, at) => {
    const hits = run(ids);
    expect(hits.indexOf(true)).toBe(at);
  });

  test('a stop string wholly inside earlier tokens does not fire again', () => {
    expect(run([2, 3])).toEqual([true, false]); // stop|at: caught at "stop", not at "at"
    expect(run([10, 3])).toEqual([false, false]);
  });
});
