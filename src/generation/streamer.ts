/**
 * Text streaming and stop strings, written against the smallest tokenizer interface: decode(ids).
 *
 * A token can end in the middle of a multi-byte UTF-8 character (byte-fallback tokens such as <0xE4>);
 * decoding then yields U+FFFD at the end. The streamer decodes all ids of its row each time and emits
 * only the text past what it has already emitted, and only once that text does not end in U+FFFD, so a
 * character is never split across two pieces. Decoding everything again costs O(n) per token; at the
 * lengths generate() produces this is small next to a decoder forward.
 */

/** What the streamer and stop strings need from a tokenizer (src/processing/tokenizer.ts provides it). */
export interface TokenDecoder {
  decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): string;
}

const REPLACEMENT = '\uFFFD';

/** Incremental text of one row. */
export class TextStreamer {
  private readonly ids: number[] = [];
  private emitted = 0; // characters of the decoded text already returned

  constructor(
    private readonly tokenizer: TokenDecoder,
    private readonly skipSpecialTokens = true,
  ) {}

  /** Appends tokens; returns the newly completed text ('' while a character is still incomplete). */
  put(ids: readonly number[]): string {
    this.ids.push(...ids);
    const text = this.decode();
    if (text.endsWith(REPLACEMENT)) return '';
    return this.take(text);
  }

  /** Returns whatever is left, an incomplete trailing character included (the sequence ended there). */
  end(): string {
    return this.take(this.decode());
  }

  private decode(): string {
    return this.tokenizer.decode(this.ids, { skipSpecialTokens: this.skipSpecialTokens });
  }

  private take(text: string): string {
    const piece = text.slice(this.emitted);
    this.emitted = Math.max(this.emitted, text.length);
    return piece;
  }
}

/**
 * Stop strings (transformers' StopStringCriteria semantics): a row stops when a stop string occurs in
 * its generated text and overlaps the text of its last token, i.e. it was completed (or overhung) by the
 * token just generated. Occurrences that lie wholly in earlier text were already caught when they
 * formed. Only the generated tokens are decoded, not the prompt.
 */
export class StopStringMatcher {
  private readonly ids: number[] = [];
  private previousLength = 0;

  constructor(
    private readonly tokenizer: TokenDecoder,
    private readonly stopStrings: readonly string[],
  ) {}

  /** Appends one token; true when a stop string now ends within (or overhangs) that token's text. */
  push(id: number): boolean {
    this.ids.push(id);
    const text = this.tokenizer.decode(this.ids);
    const from = this.previousLength;
    this.previousLength = text.length;
    return this.stopStrings.some((s) => s.length > 0 && text.indexOf(s, Math.max(0, from - s.length + 1)) >= 0);
  }
}
