// Parity of LlamaTokenizer with Python transformers 5.24 (AutoTokenizer) on the fixtures written by
// reference/gen_tokenizer.py, plus the real Llama/Vicuna vocabulary check of spec §4.1.
// Every comparison is exact: token ids and decoded strings are discrete, there is no tolerance.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { InputError, TokenizerError } from '../../src/errors';
import { EncodeOptions, LlamaTokenizer } from '../../src/processing/tokenizer';

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'tokenizer');
const SMALL = path.join(FIXTURES, 'small');
const VL_STYLE = path.join(FIXTURES, 'videollava_style');

interface EncodeCase {
  name: string;
  text: string;
  ids: number[];
  ids_no_special: number[] | null;
  tokens: string[] | null;
  ids_videollava_style: number[];
  ids_legacy: number[] | null;
  ids_no_prefix_space: number[] | null;
  decode: string;
  decode_skip: string;
  decode_no_prefix_space_skip: string | null;
}
interface BatchCase {
  name: string;
  options: Record<string, unknown>;
  truncation_side: 'left' | 'right';
  input_ids: number[][];
  attention_mask: number[][];
}
interface DecodeCase {
  name: string;
  ids: number[];
  [variant: string]: unknown;
}
const expected = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'expected.json'), 'utf8')) as {
  special: Record<string, unknown>;
  encode: EncodeCase[];
  batches: { texts: string[]; cases: BatchCase[] };
  decode: DecodeCase[];
  added_token_flags: {
    tokens: Array<{ content: string; lstrip?: boolean; rstrip?: boolean; single_word?: boolean; special?: boolean }>;
    ids: number[];
    cases: Array<{ text: string; ids: number[]; decode: string; decode_skip: string }>;
  };
  convert_ids_to_tokens: { ids: number[]; tokens: string[] };
  convert_tokens_to_ids: { tokens: string[]; ids: number[] };
};

const tok = LlamaTokenizer.fromPretrained(SMALL);

describe('LlamaTokenizer: encoding parity with transformers (small SentencePiece BPE fixture)', () => {
  const vlStyle = LlamaTokenizer.fromPretrained(VL_STYLE);
  const legacy = LlamaTokenizer.fromPretrained(SMALL, { legacy: true });
  const noPrefix = LlamaTokenizer.fromPretrained(SMALL, { addPrefixSpace: false });

  it.each(expected.encode.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    expect(tok.encode(c.text)).toEqual(c.ids);
    // The -hf layout (legacy normaliser in tokenizer.json, added_tokens_decoder in the config) gives the same ids,
    // because transformers 5 rebuilds the Llama pipeline instead of replaying the file.
    expect(vlStyle.encode(c.text)).toEqual(c.ids_videollava_style);
    expect(tok.decode(c.ids)).toBe(c.decode);
    expect(tok.decode(c.ids, { skipSpecialTokens: true })).toBe(c.decode_skip);
    if (c.ids_no_special) expect(tok.encode(c.text, { addSpecialTokens: false })).toEqual(c.ids_no_special);
    if (c.tokens) expect(tok.convertIdsToTokens(c.ids)).toEqual(c.tokens);
    if (c.ids_legacy) expect(legacy.encode(c.text)).toEqual(c.ids_legacy);
    if (c.ids_no_prefix_space) {
      expect(noPrefix.encode(c.text)).toEqual(c.ids_no_prefix_space);
      expect(noPrefix.decode(c.ids_no_prefix_space, { skipSpecialTokens: true })).toBe(c.decode_no_prefix_space_skip);
    }
  });

  it('has the special ids, sizes and sides that Python reports', () => {
    const s = expected.special;
    expect(tok.bosTokenId).toBe(s.bos);
    expect(tok.eosTokenId).toBe(s.eos);
    expect(tok.padTokenId).toBe(s.pad);
    expect(tok.unkTokenId).toBe(s.unk);
    expect(tok.imageTokenId).toBe(s.image);
    expect(tok.videoTokenId).toBe(s.video);
    expect(tok.vocabSize).toBe(s.vocab_size);
    expect(tok.size).toBe(s.len);
    expect(tok.paddingSide).toBe(s.padding_side);
    expect(tok.truncationSide).toBe(s.truncation_side);
    expect(tok.allSpecialIds).toEqual(s.all_special_ids);
    expect(vlStyle.modelMaxLength).toBe(s.videollava_style_model_max_length);
    const vl = [vlStyle.bosTokenId, vlStyle.eosTokenId, vlStyle.padTokenId, vlStyle.imageTokenId, vlStyle.videoTokenId];
    expect(vl).toEqual([s.bos, s.eos, s.pad, s.image, s.video]);
  });

  it('converts tokens and ids like Python (unknown token → unk id)', () => {
    const { ids, tokens } = expected.convert_ids_to_tokens;
    expect(tok.convertIdsToTokens(ids)).toEqual(tokens);
    const back = expected.convert_tokens_to_ids;
    expect(tok.convertTokensToIds(back.tokens)).toEqual(back.ids);
    expect(tok.tokenToId('not-a-token')).toBeUndefined();
    expect(tok.tokenToId('<video>')).toBe(expected.special.video);
  });

  it('matches lstrip / rstrip / single_word added tokens added after loading', () => {
    const t = LlamaTokenizer.fromPretrained(SMALL);
    const flags = expected.added_token_flags;
    t.addTokens(
      flags.tokens.map((f) => ({
        content: f.content,
        lstrip: f.lstrip,
        rstrip: f.rstrip,
        singleWord: f.single_word,
        special: f.special,
      })),
    );
    expect(flags.tokens.map((f) => t.tokenToId(f.content))).toEqual(flags.ids);
    for (const c of flags.cases) {
      expect([c.text, t.encode(c.text)]).toEqual([c.text, c.ids]);
      expect(t.decode(c.ids)).toBe(c.decode);
      expect(t.decode(c.ids, { skipSpecialTokens: true })).toBe(c.decode_skip);
    }
  });
});

describe('LlamaTokenizer: batches, padding and truncation parity', () => {
  const toOptions = (o: Record<string, unknown>): EncodeOptions => ({
    padding: o.padding as EncodeOptions['padding'],
    truncation: o.truncation as boolean | undefined,
    maxLength: o.max_length as number | undefined,
    padToMultipleOf: o.pad_to_multiple_of as number | undefined,
    paddingSide: o.padding_side as 'left' | 'right' | undefined,
    addSpecialTokens: o.add_special_tokens as boolean | undefined,
  });

  it.each(expected.batches.cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const t = LlamaTokenizer.fromPretrained(SMALL);
    t.truncationSide = c.truncation_side;
    const out = t.encodeBatch(expected.batches.texts, toOptions(c.options));
    expect(out.inputIds).toEqual(c.input_ids);
    expect(out.attentionMask).toEqual(c.attention_mask);
  });

  it('pads with the padding side set on the tokenizer', () => {
    const t = LlamaTokenizer.fromPretrained(SMALL);
    const right = expected.batches.cases.find((c) => c.name === 'longest_right') as BatchCase;
    t.paddingSide = 'right';
    expect(t.encodeBatch(expected.batches.texts, { padding: true }).inputIds).toEqual(right.input_ids);
  });

  it('rejects impossible padding and truncation requests', () => {
    const notMultiple = { padding: true, truncation: true, maxLength: 10, padToMultipleOf: 8 };
    expect(() => tok.encodeBatch(['a'], notMultiple)).toThrow(InputError);
    expect(() => tok.encodeBatch(['a'], { maxLength: -1 })).toThrow(InputError);
    expect(() => tok.encodeBatch(['a'], { padding: 'sideways' as unknown as boolean })).toThrow(InputError);
    const noPad = LlamaTokenizer.fromPretrained(SMALL, { padToken: null });
    expect(() => noPad.encodeBatch(['a', 'bb'], { padding: true })).toThrow(/no pad token/);
  });
});

describe('LlamaTokenizer: decoding parity', () => {
  it.each(expected.decode.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    for (const skip of [false, true]) {
      for (const clean of [false, true]) {
        const want = c[`skip=${skip ? 'True' : 'False'},clean=${clean ? 'True' : 'False'}`];
        expect(tok.decode(c.ids, { skipSpecialTokens: skip, cleanUpTokenizationSpaces: clean })).toBe(want);
      }
    }
  });

  it('batchDecode decodes each row', () => {
    const cases = expected.decode.slice(0, 3);
    const decoded = tok.batchDecode(cases.map((c) => c.ids), { skipSpecialTokens: true });
    expect(decoded).toEqual(cases.map((c) => c['skip=True,clean=False']));
  });

  it('rejects ids that are not non-negative integers', () => {
    expect(() => tok.decode([1, -3])).toThrow(InputError);
    expect(() => tok.decode([1, 2.5])).toThrow(/ids\[1\]/);
    expect(() => tok.convertIdsToTokens([99999])).toThrow(InputError);
  });
});

describe('DecodeStream', () => {
  const byId = (hex: number): number => tok.requireTokenId(`<0x${hex.toString(16).toUpperCase().padStart(2, '0')}>`);

  function streamAll(ids: number[], skipSpecialTokens: boolean): string[] {
    const stream = tok.decodeStream({ skipSpecialTokens });
    const chunks = ids.map((id) => stream.push(id));
    chunks.push(stream.flush());
    return chunks;
  }

  it('holds byte tokens until the emoji is complete', () => {
    const emoji = expected.encode.find((c) => c.name === 'emoji') as EncodeCase;
    const chunks = streamAll(emoji.ids, true);
    const f0 = emoji.ids.indexOf(byId(0xf0));
    expect(chunks.slice(f0, f0 + 3)).toEqual(['', '', '']);
    expect(chunks[f0 + 3]).toBe('😀');
    expect(chunks.join('')).toBe(emoji.decode_skip);
  });

  it.each(expected.encode.filter((c) => c.name !== 'long_prompt').map((c) => [c.name, c] as const))(
    'streams %s to the Python decode without splitting characters',
    (_name, c) => {
      for (const [skip, want] of [[true, c.decode_skip], [false, c.decode]] as const) {
        const chunks = streamAll(c.ids, skip);
        expect(chunks.join('')).toBe(want);
        for (const chunk of chunks) expect(chunk).not.toContain('\ufffd'); // every fixture text is valid UTF-8
      }
    },
  );

  it('keeps a byte run together across skipped special tokens', () => {
    const ids = [byId(0xe2), tok.padTokenId as number, byId(0x82), byId(0xac)];
    expect(streamAll(ids, true)).toEqual(['', '', '', '€', '']);
    expect(streamAll(ids, true).join('')).toBe(tok.decode(ids, { skipSpecialTokens: true }));
  });

  it('differs from decode only for a byte run that is invalid as a whole (documented trade-off)', () => {
    const c = expected.decode.find((d) => d.name === 'euro_then_lead') as DecodeCase;
    expect(c['skip=False,clean=False']).toBe('\ufffd'.repeat(4) + ' is'); // Python: the whole run is replaced
    expect(streamAll(c.ids, false).join('')).toBe('€\ufffd is'); // the stream had already emitted "€"
  });

  it('emits replacement characters for byte runs that cannot be completed, as decode does', () => {
    const lone = expected.decode.find((c) => c.name === 'lone_lead_byte') as DecodeCase;
    expect(streamAll(lone.ids, false).join('')).toBe(lone['skip=False,clean=False']);
    const stream = tok.decodeStream();
    expect(stream.push(byId(0xe2))).toBe('');
    expect(stream.flush()).toBe('\ufffd');
  });
});

describe('LlamaTokenizer: file errors', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tok-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('names the missing tokenizer.json', () => {
    expect(() => LlamaTokenizer.fromPretrained(dir)).toThrow(TokenizerError);
    expect(() => LlamaTokenizer.fromPretrained(dir)).toThrow(path.join(dir, 'tokenizer.json'));
  });

  it('reports malformed JSON with the file name', () => {
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), '{"model": {');
    expect(() => LlamaTokenizer.fromPretrained(dir)).toThrow(/tokenizer\.json: malformed JSON/);
    fs.copyFileSync(path.join(SMALL, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), 'not json');
    expect(() => LlamaTokenizer.fromPretrained(dir)).toThrow(/tokenizer_config\.json: malformed JSON/);
  });

  it('rejects a non-BPE model and broken vocab/merges/config fields', () => {
    const base = JSON.parse(fs.readFileSync(path.join(SMALL, 'tokenizer.json'), 'utf8'));
    const write = (json: unknown, config: unknown = {}): void => {
      fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(json));
      fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config));
    };
    write({ ...base, model: { ...base.model, type: 'Unigram' } });
    expect(() => LlamaTokenizer.fromPretrained(dir)).toThrow(/expected "BPE"/);
    write({ ...base, model: { ...base.model, merges: ['▁a ▁zzzz-missing'] } });
    expect(() => LlamaTokenizer.fromPretrained(dir)).toThrow(/merge #0/);
    write({ ...base, model: { ...base.model, vocab: [] } });
    expect(() => LlamaTokenizer.fromPretrained(dir)).toThrow(/model\.vocab/);
    write(base, { padding_side: 'middle' });
    expect(() => LlamaTokenizer.fromPretrained(dir)).toThrow(/padding_side/);
    write(base, { add_bos_token: 'yes' });
    expect(() => LlamaTokenizer.fromPretrained(dir)).toThrow(/add_bos_token/);
    write(base, { added_tokens_decoder: { x: { content: '<a>' } } });
    expect(() => LlamaTokenizer.fromPretrained(dir)).toThrow(TokenizerError);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The real Llama-2 / Vicuna vocabulary, taken from llama-tokenizer-js (which embeds tokenizer.json's vocab and
// merges: vocab as base64 of newline-joined tokens, merges as base64 of little-endian uint16 id pairs).

function loadRealVocab(): { vocab: string[]; merges: Array<[string, string]> } {
  const source = fs.readFileSync(require.resolve('llama-tokenizer-js/llama-tokenizer.js'), 'utf8');
  const literal = (name: string): string => {
    const match = new RegExp(`const ${name} = "([A-Za-z0-9+/=]+)"`).exec(source);
    if (!match) throw new Error(`${name} not found in llama-tokenizer-js`);
    return match[1];
  };
  const vocab = Buffer.from(literal('llama_vocab_base64'), 'base64').toString('utf8').split('\n');
  const bytes = Buffer.from(literal('llama_merges_binary'), 'base64');
  const merges: Array<[string, string]> = [];
  for (let i = 0; i + 3 < bytes.length; i += 4) {
    merges.push([vocab[bytes.readUInt16LE(i)], vocab[bytes.readUInt16LE(i + 2)]]);
  }
  return { vocab, merges };
}

describe('LlamaTokenizer with the real Llama/Vicuna vocabulary (spec §4.1)', () => {
  const { vocab, merges } = loadRealVocab();
  const real = new LlamaTokenizer({
    vocab,
    merges,
    // As in LanguageBind/Video-LLaVA-7B-hf tokenizer_config.json.
    addedTokens: [
      { id: 0, content: '<unk>', special: true },
      { id: 1, content: '<s>', special: true },
      { id: 2, content: '</s>', special: true },
      { id: 32000, content: '<image>', special: true },
      { id: 32001, content: '<video>', special: true },
      { id: 32002, content: '<pad>', special: true },
    ],
    addBosToken: true,
    addEosToken: false,
    legacy: false,
    padToken: '<pad>',
    modelMaxLength: 4096,
  });

  it('reproduces the integration-test ids of the expanded video prompt', () => {
    expect(vocab.length).toBe(32000);
    const prompt = `USER: ${'<video>'.repeat(2056)}\nWhy is this video funny? ASSISTANT:`;
    const ids = real.encode(prompt);
    expect(ids.length).toBe(2074);
    // From the Python reference's integration test (spec §4.1).
    const withoutVideo = [1, 3148, 1001, 29901, 29871, 13, 11008, 338, 445, 4863, 2090, 1460, 29973, 319, 1799, 9047, 13566, 29901];
    expect(ids.filter((id) => id !== 32001)).toEqual(withoutVideo);
    // The 2056 placeholders sit between the lone "▁" (29871) and "\n" (13).
    expect(ids.slice(4, 4 + 2058)).toEqual([29871, ...new Array(2056).fill(32001), 13]);
    expect(real.decode(ids, { skipSpecialTokens: true })).toBe('USER: \nWhy is this video funny? ASSISTANT:');
  });

  it('agrees with llama-tokenizer-js on plain strings (independent second implementation)', () => {
    const texts = [
      'Hello world',
      'The quick brown fox jumps over the lazy dog.',
      'What are the cats in the image doing?',
      'naïve café 😀 日本語',
      'In 2024, 3.14159 ≈ π',
    ];
    const script =
      "import t from 'llama-tokenizer-js'; const texts = JSON.parse(process.argv[1]);" +
      'console.log(JSON.stringify(texts.map((s) => t.encode(s, true, true, false))));';
    const args = ['--input-type=module', '-e', script, JSON.stringify(texts)];
    const out = execFileSync(process.execPath, args, { cwd: path.join(__dirname, '..', '..'), encoding: 'utf8' });
    const theirs = JSON.parse(out) as number[][];
    expect(texts.map((s) => real.encode(s))).toEqual(theirs);
  });

  it('encodes a 4000-token prompt quickly', () => {
    const words = 'the baby is reading a book on the bed while the dog sleeps nearby , and 2024 happens'.split(' ');
    const text = Array.from({ length: 3600 }, (_, i) => words[(i * 7) % words.length]).join(' ');
    real.encode(text); // warm-up (JIT)
    const start = process.hrtime.bigint();
    const ids = real.encode(text);
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    expect(ids.length).toBeGreaterThan(3600);
    // Target is well under 100 ms; the bound is loose because the test machine is shared and slow.
    expect(ms).toBeLessThan(500);
  });
});
