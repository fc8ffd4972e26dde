/**
 * A word-level Llama-style tokenizer for the demo model, in the Hugging Face tokenizer.json layout that
 * transformers' LlamaTokenizer (and src/processing/tokenizer.ts) load: a byte-fallback BPE whose merges
 * spell every known word as one piece.
 *
 * Vocabulary, by id: <unk> <s> </s>, the 256 byte tokens <0x00>…<0xFF>, "▁" and the printable ASCII
 * characters, then every merge result; the added tokens <image> <video> <pad> come after it. A word
 * appears as "▁word" (after a space) and, for the words that can open a chunk of text without a space
 * before them ("What" after "<video>\n", "USER" after "</s>"), also bare.
 *
 * Merges build each form left to right ("▁ c" → "▁c", "▁c o" → "▁co", …). All "▁" chains rank before all
 * bare chains, so that in "▁red" the chain of "▁red" completes before any bare merge ("r e") could split
 * it; chains never cross a "▁" (no merge has "▁" on its right), so words never fuse. Unknown text still
 * encodes: it falls back to characters, then to bytes.
 */

import { TokenizerError } from '../errors';

const METASPACE = '▁';
const SPECIALS = ['<unk>', '<s>', '</s>'];
/** Added after the base vocabulary, as the Video-LLaVA checkpoints add them. */
export const ADDED_TOKENS = ['<image>', '<video>', '<pad>'] as const;

export interface TokenizerFiles {
  /** tokenizer.json contents. */
  tokenizer: Record<string, unknown>;
  /** tokenizer_config.json contents. */
  tokenizerConfig: Record<string, unknown>;
  /** Size of the vocabulary including the added tokens (len(tokenizer) in Python). */
  size: number;
  ids: { bos: number; eos: number; unk: number; image: number; video: number; pad: number };
}

function byteToken(b: number): string {
  return `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
}

/** Prefix-chain merges of one form: "▁red" → [["▁","r"], ["▁r","e"], ["▁re","d"]]. */
function chain(form: string): Array<[string, string]> {
  const chars = [...form];
  const out: Array<[string, string]> = [];
  for (let i = 1; i < chars.length; i++) out.push([chars.slice(0, i).join(''), chars[i]]);
  return out;
}

/**
 * tokenizer.json and tokenizer_config.json for a vocabulary of `words` (letters only). `bareWords` are
 * the ones that also get a form without "▁".
 */
export function buildWordTokenizer(words: readonly string[], bareWords: readonly string[]): TokenizerFiles {
  for (const w of [...words, ...bareWords]) {
    if (!/^[A-Za-z]+$/.test(w)) throw new TokenizerError(`demo tokenizer: word ${JSON.stringify(w)} must be ASCII letters only`);
  }
  const vocab = new Map<string, number>();
  const add = (token: string) => {
    if (!vocab.has(token)) vocab.set(token, vocab.size);
  };
  SPECIALS.forEach(add);
  for (let b = 0; b < 256; b++) add(byteToken(b));
  add(METASPACE);
  for (let c = 0x21; c < 0x7f; c++) add(String.fromCharCode(c));

  const merges: Array<[string, string]> = [];
  const seen = new Set<string>();
  const addChains = (forms: string[]) => {
    // shorter results first within a group: ranks then read like the pieces' lengths
    const steps = forms.flatMap(chain).sort((a, b) => a.join('').length - b.join('').length || (a.join('') < b.join('') ? -1 : a.join('') > b.join('') ? 1 : 0));
    for (const [l, r] of steps) {
      const key = `${l} ${r}`;
      if (seen.has(key)) continue;
      seen.add(key);
      merges.push([l, r]);
      add(l + r);
    }
  };
  addChains([...new Set(words)].map((w) => METASPACE + w));
  addChains([...new Set(bareWords)]);

  const base = vocab.size;
  const ids = { unk: 0, bos: 1, eos: 2, image: base, video: base + 1, pad: base + 2 };
  const addedToken = (content: string, id: number) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [...SPECIALS.map((t, i) => addedToken(t, i)), ...ADDED_TOKENS.map((t, i) => addedToken(t, base + i))],
    normalizer: null,
    pre_tokenizer: { type: 'Metaspace', replacement: METASPACE, prepend_scheme: 'first', split: false },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '<s>', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '<s>', type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: METASPACE }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab: Object.fromEntries(vocab),
      merges,
    },
  };
  const tokenizerConfig = {
    add_bos_token: true,
    add_eos_token: false,
    add_prefix_space: null,
    bos_token: '<s>',
    clean_up_tokenization_spaces: false,
    eos_token: '</s>',
    image_token: '<image>',
    legacy: false,
    model_max_length: 1024,
    pad_token: '<pad>',
    padding_side: 'left',
    tokenizer_class: 'LlamaTokenizer',
    unk_token: '<unk>',
    video_token: '<video>',
  };
  return { tokenizer, tokenizerConfig, size: base + ADDED_TOKENS.length, ids };
}
