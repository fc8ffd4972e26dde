/**
 * The Llama tokenizer of Video-LLaVA, as Python `transformers` 5.x loads it with `AutoTokenizer` (spec §4.1).
 *
 * What transformers 5 does, and therefore what this file does:
 * - `tokenizer.json` supplies only the BPE vocabulary, the merges, the added tokens and the post-processor. The
 *   normaliser, pre-tokenizer and decoder written in that file are ignored: `LlamaTokenizer.__init__` rebuilds
 *   them (no normaliser; Metaspace "▁" pre-tokenizer without splitting; decoder Replace("▁"→" "),
 *   ByteFallback, Fuse, Strip one leading space). The -hf checkpoint's own tokenizer.json still has the legacy
 *   Prepend+Replace normaliser, which is why its file cannot simply be replayed.
 * - `legacy: false` + `add_prefix_space` → Metaspace `prepend_scheme = "first"`: only the text chunk that starts
 *   at offset 0 of the input gets a "▁" prepended (and only when it does not already start with one). Text right
 *   after an added token gets none, so "USER: <video>\nWhy" → "▁USER", ":", "▁", "<video>", "<0x0A>", "Why".
 * - Added tokens (`<s>`, `</s>`, `<unk>`, `<image>`, `<video>`, `<pad>`) are matched on the raw text, leftmost
 *   longest, before anything else.
 * - BPE: characters → vocabulary ids (UTF-8 bytes as `<0xXX>` tokens when a character is missing), then merges
 *   applied by rank, lowest first, leftmost first among equal ranks (the HF tokenizers `BPE` model).
 * - Decoding replaces "▁" with spaces, turns each run of byte tokens into UTF-8 text (a run that is not valid
 *   UTF-8 becomes one U+FFFD per byte), joins, and strips one leading space. `clean_up_tokenization_spaces` is
 *   ignored for BPE models in transformers 5, so it is accepted and ignored here too.
 */


import { InputError, TokenizerError } from '../errors';
import { platform } from '../platform';
import { ModelFiles } from '../platform/files';

const METASPACE = '▁';
const UTF8 = new TextEncoder();
/** transformers' `VERY_LARGE_INTEGER` (model_max_length when none is configured) and `LARGE_INTEGER`. */
const VERY_LARGE_INTEGER = 1e30;
const LARGE_INTEGER = 1e20;

export type Side = 'left' | 'right';

/** One token matched on the raw text before BPE (tokenizers' `AddedToken`). */
export interface AddedToken {
  id: number;
  content: string;
  /** Special tokens are dropped by `decode(..., { skipSpecialTokens: true })`. */
  special: boolean;
  /** Swallow whitespace on the left / right of the match. */
  lstrip: boolean;
  rstrip: boolean;
  /** Match only when not glued to letters or digits. */
  singleWord: boolean;
}

/** An added token to register: only `content` is required; a missing id means "the next free id". */
export type AddedTokenInput = Partial<AddedToken> & { content: string };

/** Settings read from tokenizer_config.json (Python names in comments). */
export interface LlamaTokenizerOptions {
  /** add_bos_token / add_eos_token. Undefined: follow tokenizer.json's post-processor. */
  addBosToken?: boolean;
  addEosToken?: boolean;
  /** legacy (default false). true: every chunk between added tokens gets a "▁" prefix. */
  legacy?: boolean;
  /** add_prefix_space (default true). false: no "▁" prefix anywhere, no leading-space strip when decoding. */
  addPrefixSpace?: boolean;
  /** padding_side (LlamaTokenizer default "left") / truncation_side (default "right"). */
  paddingSide?: Side;
  truncationSide?: Side;
  /** model_max_length (default 1e30, i.e. unlimited). */
  modelMaxLength?: number;
  bosToken?: string | null;
  eosToken?: string | null;
  unkToken?: string | null;
  padToken?: string | null;
  /** extra_special_tokens / additional_special_tokens: counted in `allSpecialIds`. */
  extraSpecialTokens?: string[];
  /** Placeholder tokens used by the processor. */
  imageToken?: string;
  videoToken?: string;
}

/** Everything needed to build a tokenizer without files (e.g. from another vocabulary source). */
export interface LlamaTokenizerData extends LlamaTokenizerOptions {
  /** Model vocabulary: token strings indexed by id, or token → id. */
  vocab: string[] | Record<string, number>;
  /** Merges in rank order, as "a b" strings or [a, b] pairs. */
  merges: Array<string | [string, string]>;
  addedTokens?: AddedTokenInput[];
  /** Special tokens (by name) that tokenizer.json's post-processor puts around every sequence; used when
   *  addBosToken / addEosToken are both unset. */
  postProcessor?: { prefix: string[]; suffix: string[] };
}

export interface EncodeOptions {
  /** Add bos (and eos, if configured). Default true. */
  addSpecialTokens?: boolean;
  /** true / "longest": pad to the longest row; "max_length": pad to maxLength. Default false. */
  padding?: boolean | 'longest' | 'max_length' | 'do_not_pad';
  /** Truncate to maxLength (or model_max_length). Default: on when only maxLength is given, as in Python. */
  truncation?: boolean;
  maxLength?: number;
  padToMultipleOf?: number;
  /** Overrides the tokenizer's paddingSide for this call. */
  paddingSide?: Side;
}

export interface BatchEncoding {
  inputIds: number[][];
  attentionMask: number[][];
}

export interface DecodeOptions {
  skipSpecialTokens?: boolean;
  /** Ignored: transformers 5 ignores it for BPE tokenizers (it would strip spaces before punctuation). */
  cleanUpTokenizationSpaces?: boolean;
}

// ---------------------------------------------------------------------------------------------------------------
// BPE model

/** UTF-8 byte tokens as the tokenizers crate names them: `<0x0A>`. */
function byteTokenName(byte: number): string {
  return `<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`;
}

function parseByteToken(token: string): number | undefined {
  if (token.length !== 6 || !token.startsWith('<0x') || token[5] !== '>') return undefined;
  const hex = token.slice(3, 5);
  return /^[0-9A-Fa-f]{2}$/.test(hex) ? parseInt(hex, 16) : undefined;
}

/** Binary min-heap of merge candidates, each packed into one number: rank * stride + left symbol position. */
class MergeQueue {
  private items: number[] = [];

  push(key: number): void {
    const a = this.items;
    a.push(key);
    let i = a.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (a[parent] <= key) break;
      a[i] = a[parent];
      i = parent;
    }
    a[i] = key;
  }

  pop(): number | undefined {
    const a = this.items;
    if (a.length === 0) return undefined;
    const top = a[0];
    const last = a.pop() as number;
    if (a.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= a.length) break;
        const r = l + 1;
        const c = r < a.length && a[r] < a[l] ? r : l;
        if (a[c] >= last) break;
        a[i] = a[c];
        i = c;
      }
      a[i] = last;
    }
    return top;
  }
}

/** SentencePiece-style BPE with byte fallback: the `tokenizers` BPE model with `byte_fallback: true`. */
class BpeModel {
  readonly tokenToId = new Map<string, number>();
  readonly idToToken: string[] = [];
  /** (left id, right id) packed as left * size + right → merge rank. */
  private readonly mergeRank = new Map<number, number>();
  /** merge rank → id of the merged token. */
  private readonly mergeResult: Int32Array;
  /** byte value → id of its `<0xXX>` token, or -1. */
  private readonly byteIds = new Int32Array(256).fill(-1);

  constructor(vocab: string[] | Record<string, number>, merges: Array<string | [string, string]>, source: string) {
    const entries: Array<[string, number]> = Array.isArray(vocab)
      ? vocab.map((token, id) => [token, id])
      : Object.entries(vocab);
    for (const [token, id] of entries) {
      if (!Number.isInteger(id) || id < 0) {
        const entry = JSON.stringify(token);
        throw new TokenizerError(`${source}: vocabulary entry ${entry} has id ${id}, expected a non-negative integer`);
      }
      this.tokenToId.set(token, id);
      this.idToToken[id] = token;
    }
    for (let b = 0; b < 256; b++) this.byteIds[b] = this.tokenToId.get(byteTokenName(b)) ?? -1;

    this.mergeResult = new Int32Array(merges.length);
    merges.forEach((merge, rank) => {
      const pair = typeof merge === 'string' ? splitMerge(merge) : merge;
      if (!pair || pair.length !== 2 || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') {
        throw new TokenizerError(`${source}: merge #${rank} is ${JSON.stringify(merge)}, expected "a b" or ["a", "b"]`);
      }
      const left = this.tokenToId.get(pair[0]);
      const right = this.tokenToId.get(pair[1]);
      const merged = this.tokenToId.get(pair[0] + pair[1]);
      if (left === undefined || right === undefined || merged === undefined) {
        throw new TokenizerError(
          `${source}: merge #${rank} ${JSON.stringify(pair)} uses a token missing from the vocabulary`,
        );
      }
      const key = this.pairKey(left, right);
      if (!this.mergeRank.has(key)) this.mergeRank.set(key, rank);
      this.mergeResult[rank] = merged;
    });
  }

  get size(): number {
    return this.idToToken.length;
  }

  private pairKey(left: number, right: number): number {
    return left * this.idToToken.length + right;
  }

  /** One pre-tokenized word → ids. */
  tokenize(word: string): number[] {
    // Initial symbols: one per character, or one per UTF-8 byte for characters outside the vocabulary.
    const symbols: number[] = [];
    for (const ch of word) {
      const id = this.tokenToId.get(ch);
      if (id !== undefined) {
        symbols.push(id);
        continue;
      }
      const bytes = UTF8.encode(ch);
      const ids = Array.from(bytes, (b) => this.byteIds[b]);
      // transformers 5 builds the BPE model without an unk token, so a character that has neither a vocabulary
      // entry nor byte tokens is dropped (Llama vocabularies always have all 256 byte tokens).
      if (ids.every((i) => i >= 0)) symbols.push(...ids);
    }
    const n = symbols.length;
    if (n < 2) return symbols;

    const prev = new Int32Array(n);
    const next = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
    }
    const queue = new MergeQueue();
    const stride = n; // key = rank * n + position: smallest rank first, then leftmost
    const enqueue = (pos: number): void => {
      const right = next[pos];
      if (right < 0) return;
      const rank = this.mergeRank.get(this.pairKey(symbols[pos], symbols[right]));
      if (rank !== undefined) queue.push(rank * stride + pos);
    };
    for (let i = 0; i < n - 1; i++) enqueue(i);

    for (let key = queue.pop(); key !== undefined; key = queue.pop()) {
      const pos = key % stride;
      const rank = (key - pos) / stride;
      const right = next[pos];
      if (!alive[pos] || right < 0) continue;
      // Stale entry: the pair at `pos` changed since it was queued.
      const current = this.mergeRank.get(this.pairKey(symbols[pos], symbols[right]));
      if (current === undefined || this.mergeResult[current] !== this.mergeResult[rank]) continue;
      symbols[pos] = this.mergeResult[rank];
      alive[right] = 0;
      next[pos] = next[right];
      if (next[right] >= 0) prev[next[right]] = pos;
      if (prev[pos] >= 0) enqueue(prev[pos]);
      enqueue(pos);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) out.push(symbols[i]);
    return out;
  }
}

function splitMerge(merge: string): [string, string] | undefined {
  const space = merge.indexOf(' ', 1);
  return space < 0 ? undefined : [merge.slice(0, space), merge.slice(space + 1)];
}

// ---------------------------------------------------------------------------------------------------------------
// Added-token matching (tokenizers' AddedVocabulary)

const WHITESPACE = /[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/;
const WORD_CHAR = /[\p{Alphabetic}\p{N}]/u;

interface Segment {
  /** Offset in the input text where this chunk starts. */
  start: number;
  text: string;
  /** Set when the chunk is an added token. */
  added?: AddedToken;
}

class AddedTokenMatcher {
  /** First UTF-16 unit → candidate tokens, longest first. */
  private readonly byFirst = new Map<string, AddedToken[]>();

  constructor(tokens: AddedToken[]) {
    for (const token of tokens) {
      if (token.content.length === 0) continue;
      const list = this.byFirst.get(token.content[0]) ?? [];
      list.push(token);
      list.sort((a, b) => b.content.length - a.content.length);
      this.byFirst.set(token.content[0], list);
    }
  }

  /** Splits text into plain chunks and added tokens (non-overlapping, leftmost-longest matches). */
  split(text: string): Segment[] {
    const segments: Segment[] = [];
    let plainStart = 0;
    let i = 0;
    while (i < text.length) {
      const token = this.longestAt(text, i);
      if (!token) {
        i++;
        continue;
      }
      let start = i;
      let stop = i + token.content.length;
      i = stop;
      if (token.singleWord) {
        const before = WORD_CHAR.test(charBefore(text, start));
        const after = WORD_CHAR.test(charAt(text, stop));
        if (before || after) continue;
      }
      if (token.lstrip) while (start > plainStart && WHITESPACE.test(text[start - 1])) start--;
      if (token.rstrip) while (stop < text.length && WHITESPACE.test(text[stop])) stop++;
      if (start > plainStart) segments.push({ start: plainStart, text: text.slice(plainStart, start) });
      segments.push({ start, text: text.slice(start, stop), added: token });
      plainStart = stop;
      i = stop;
    }
    if (plainStart < text.length) segments.push({ start: plainStart, text: text.slice(plainStart) });
    return segments;
  }

  private longestAt(text: string, i: number): AddedToken | undefined {
    const candidates = this.byFirst.get(text[i]);
    return candidates?.find((t) => text.startsWith(t.content, i));
  }
}

/** The code point ending at / starting at UTF-16 offset `i` ('' at the ends of the text). */
function charBefore(text: string, i: number): string {
  return Array.from(text.slice(Math.max(0, i - 2), i)).pop() ?? '';
}

function charAt(text: string, i: number): string {
  return i < text.length ? String.fromCodePoint(text.codePointAt(i) as number) : '';
}

// ---------------------------------------------------------------------------------------------------------------
// Decoding

/**
 * Replace("▁", " ") → ByteFallback → Fuse, on token strings. Also returns how many byte tokens end the text
 * (the run a streaming decoder may still see completed).
 */
function decodeTokenStrings(tokens: string[]): { text: string; trailingBytes: number } {
  let out = '';
  let bytes: number[] = [];
  const flushBytes = (): void => {
    if (bytes.length === 0) return;
    try {
      out += new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(bytes));
    } catch {
      out += '\ufffd'.repeat(bytes.length); // the whole run, one replacement per byte (tokenizers' ByteFallback)
    }
    bytes = [];
  };
  for (const token of tokens) {
    const replaced = token.replaceAll(METASPACE, ' ');
    const byte = parseByteToken(replaced);
    if (byte !== undefined) {
      bytes.push(byte);
    } else {
      flushBytes();
      out += replaced;
    }
  }
  const trailingBytes = bytes.length;
  flushBytes();
  return { text: out, trailingBytes };
}

// ---------------------------------------------------------------------------------------------------------------
// Tokenizer

type PrependScheme = 'first' | 'always' | 'never';

export class LlamaTokenizer {
  /** Side on which `encodeBatch` pads (Python `padding_side`). */
  paddingSide: Side;
  /** Side from which truncation removes tokens (Python `truncation_side`). */
  truncationSide: Side;
  readonly modelMaxLength: number;
  readonly legacy: boolean;
  readonly addPrefixSpace: boolean;

  private readonly model: BpeModel;
  private readonly added = new Map<string, AddedToken>();
  private readonly addedById = new Map<number, AddedToken>();
  private matcher: AddedTokenMatcher;
  private readonly prefixIds: number[];
  private readonly suffixIds: number[];
  private readonly prependScheme: PrependScheme;
  private readonly names: {
    bos: string | null;
    eos: string | null;
    unk: string | null;
    pad: string | null;
    image: string;
    video: string;
    extra: string[];
  };

  constructor(data: LlamaTokenizerData, source = 'tokenizer') {
    this.model = new BpeModel(data.vocab, data.merges, source);
    this.legacy = data.legacy ?? false;
    this.addPrefixSpace = data.addPrefixSpace ?? true;
    this.prependScheme = !this.addPrefixSpace ? 'never' : this.legacy ? 'always' : 'first';
    this.paddingSide = checkSide(data.paddingSide ?? 'left', 'padding_side', source);
    this.truncationSide = checkSide(data.truncationSide ?? 'right', 'truncation_side', source);
    this.modelMaxLength = data.modelMaxLength ?? VERY_LARGE_INTEGER;
    this.names = {
      bos: data.bosToken === undefined ? '<s>' : data.bosToken,
      eos: data.eosToken === undefined ? '</s>' : data.eosToken,
      unk: data.unkToken === undefined ? '<unk>' : data.unkToken,
      pad: data.padToken ?? null,
      image: data.imageToken ?? '<image>',
      video: data.videoToken ?? '<video>',
      extra: data.extraSpecialTokens ?? [],
    };

    for (const token of data.addedTokens ?? []) this.register(token, source);
    // As transformers does after loading: named special tokens that are not added tokens yet become special ones.
    for (const name of [this.names.bos, this.names.eos, this.names.unk, this.names.pad, ...this.names.extra]) {
      if (name !== null && !this.added.has(name)) this.register({ content: name, special: true }, source);
    }
    this.matcher = new AddedTokenMatcher([...this.added.values()]);

    // Explicit add_bos_token / add_eos_token rebuild the post-processor; otherwise tokenizer.json's applies.
    let prefix = data.postProcessor?.prefix ?? [];
    let suffix = data.postProcessor?.suffix ?? [];
    if (data.addBosToken !== undefined || data.addEosToken !== undefined) {
      prefix = data.addBosToken && this.names.bos !== null ? [this.names.bos] : [];
      suffix = data.addEosToken && this.names.eos !== null ? [this.names.eos] : [];
    }
    this.prefixIds = prefix.map((t) => this.requireTokenId(t));
    this.suffixIds = suffix.map((t) => this.requireTokenId(t));
  }

  /**
   * Loads a model directory the way `AutoTokenizer.from_pretrained` does in transformers 5: tokenizer.json
   * (required), tokenizer_config.json, and, when the config has no `added_tokens_decoder`, special_tokens_map.json
   * and added_tokens.json. `overrides` win over the files (like keyword arguments to from_pretrained).
   */
  static fromPretrained(modelDir: string | ModelFiles, overrides: LlamaTokenizerOptions = {}): LlamaTokenizer {
    const files = typeof modelDir === 'string' ? platform.localFiles(modelDir) : modelDir;
    const data = readModelDir(files);
    return new LlamaTokenizer({ ...data, ...dropUndefined(overrides) }, files.where('tokenizer.json'));
  }

  // ---- vocabulary ----------------------------------------------------------------------------------------------

  /** Size of the base vocabulary, without added tokens (Python `vocab_size`). */
  get vocabSize(): number {
    return this.model.size;
  }

  /** Base vocabulary plus added tokens (Python `len(tokenizer)`). */
  get size(): number {
    let count = this.model.size;
    for (const token of this.added.values()) if (this.model.idToToken[token.id] === undefined) count++;
    return count;
  }

  get bosTokenId(): number | undefined {
    return this.names.bos === null ? undefined : this.tokenToId(this.names.bos);
  }
  get eosTokenId(): number | undefined {
    return this.names.eos === null ? undefined : this.tokenToId(this.names.eos);
  }
  get unkTokenId(): number | undefined {
    return this.names.unk === null ? undefined : this.tokenToId(this.names.unk);
  }
  get padTokenId(): number | undefined {
    return this.names.pad === null ? undefined : this.tokenToId(this.names.pad);
  }
  get imageTokenId(): number | undefined {
    return this.tokenToId(this.names.image);
  }
  get videoTokenId(): number | undefined {
    return this.tokenToId(this.names.video);
  }

  /** The named special tokens (Python `special_tokens_map`), as exposed to chat templates. */
  get specialTokensMap(): Record<string, string> {
    const { bos, eos, unk, pad } = this.names;
    const entries = Object.entries({ bos_token: bos, eos_token: eos, unk_token: unk, pad_token: pad });
    return Object.fromEntries(entries.filter((e): e is [string, string] => e[1] !== null));
  }

  /** Ids of the named special tokens plus extra special tokens (Python `all_special_ids`), sorted. */
  get allSpecialIds(): number[] {
    const names = [this.names.bos, this.names.eos, this.names.unk, this.names.pad, ...this.names.extra];
    const ids = new Set<number>();
    for (const name of names) {
      const id = name === null ? undefined : this.tokenToId(name);
      if (id !== undefined) ids.add(id);
    }
    return [...ids].sort((a, b) => a - b);
  }

  /** Exact lookup: added tokens first, then the model vocabulary; undefined when absent. */
  tokenToId(token: string): number | undefined {
    return this.added.get(token)?.id ?? this.model.tokenToId.get(token);
  }

  /** Like `tokenToId`, but a missing token is an error that names it. */
  requireTokenId(token: string): number {
    const id = this.tokenToId(token);
    if (id === undefined) {
      throw new TokenizerError(`token ${JSON.stringify(token)} is not in the vocabulary or the added tokens`);
    }
    return id;
  }

  /** Python `convert_tokens_to_ids`: unknown tokens map to the unk id. */
  convertTokensToIds(tokens: string[]): number[] {
    return tokens.map((token) => {
      const id = this.tokenToId(token) ?? this.unkTokenId;
      if (id === undefined) {
        throw new InputError('tokens', `${JSON.stringify(token)} is unknown and the tokenizer has no unk token`);
      }
      return id;
    });
  }

  /** Python `convert_ids_to_tokens`; `skipSpecialTokens` drops `allSpecialIds` as Python does. */
  convertIdsToTokens(ids: number[], skipSpecialTokens = false): string[] {
    const skip = new Set(skipSpecialTokens ? this.allSpecialIds : []);
    const out: string[] = [];
    ids.forEach((id, i) => {
      checkId(id, `ids[${i}]`);
      if (skip.has(id)) return;
      const token = this.idToToken(id);
      if (token === undefined) {
        throw new InputError(`ids[${i}]`, `id ${id} is outside the vocabulary (size ${this.size})`);
      }
      out.push(token);
    });
    return out;
  }

  /**
   * Adds tokens matched on the raw text before BPE (Python `add_tokens`): existing vocabulary entries keep their
   * id, new ones get the next free id. Returns how many were not already added tokens.
   */
  addTokens(tokens: AddedTokenInput[]): number {
    let count = 0;
    for (const token of tokens) {
      if (this.added.has(token.content)) continue;
      this.register({ ...token, id: undefined }, 'addTokens');
      count++;
    }
    this.matcher = new AddedTokenMatcher([...this.added.values()]);
    return count;
  }

  // ---- encoding ------------------------------------------------------------------------------------------------

  /** Token strings of `text`, without special tokens (Python `tokenize`). */
  tokenize(text: string): string[] {
    return this.encodeText(text).map((id) => this.idToToken(id) as string);
  }

  /** One text → ids. Padding options are ignored here (use `encodeBatch`); truncation applies. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    return this.encodeBatch([text], { ...options, padding: false }).inputIds[0];
  }

  /** Python `tokenizer(texts, padding=..., truncation=..., max_length=...)` → ids and attention masks. */
  encodeBatch(texts: string | string[], options: EncodeOptions = {}): BatchEncoding {
    const batch = typeof texts === 'string' ? [texts] : texts;
    if (!Array.isArray(batch)) {
      throw new InputError('texts', `expected a string or an array of strings, found ${describe(texts)}`);
    }
    batch.forEach((t, i) => {
      if (typeof t !== 'string') throw new InputError(`texts[${i}]`, `expected a string, found ${describe(t)}`);
    });
    const { padTo, truncateTo } = this.resolveLengths(options);
    const addSpecial = options.addSpecialTokens ?? true;
    const nSpecial = addSpecial ? this.prefixIds.length + this.suffixIds.length : 0;

    const rows = batch.map((text) => {
      let ids = this.encodeText(text);
      if (truncateTo !== undefined) {
        const keep = Math.max(0, truncateTo - nSpecial);
        if (ids.length > keep) {
          ids = this.truncationSide === 'right' ? ids.slice(0, keep) : ids.slice(ids.length - keep);
        }
      }
      return addSpecial ? [...this.prefixIds, ...ids, ...this.suffixIds] : ids;
    });

    let target: number | undefined;
    if (padTo === 'longest') target = Math.max(0, ...rows.map((r) => r.length));
    else if (padTo !== undefined) target = padTo;
    const multiple = options.padToMultipleOf;
    if (target !== undefined && multiple !== undefined && target % multiple !== 0) {
      target += multiple - (target % multiple);
    }

    const side = options.paddingSide ?? this.paddingSide;
    const inputIds: number[][] = [];
    const attentionMask: number[][] = [];
    for (const row of rows) {
      const missing = target === undefined ? 0 : Math.max(0, target - row.length);
      const pads = new Array<number>(missing).fill(this.padTokenId ?? 0);
      const zeros = new Array<number>(missing).fill(0);
      const ones = new Array<number>(row.length).fill(1);
      inputIds.push(side === 'left' ? [...pads, ...row] : [...row, ...pads]);
      attentionMask.push(side === 'left' ? [...zeros, ...ones] : [...ones, ...zeros]);
    }
    return { inputIds, attentionMask };
  }

  /** Python `_get_padding_truncation_strategies`: what "padding", "truncation" and "max_length" combine to. */
  private resolveLengths(options: EncodeOptions): { padTo?: number | 'longest'; truncateTo?: number } {
    const { padding = false, maxLength, padToMultipleOf } = options;
    let truncation = options.truncation;
    if (maxLength !== undefined && (!Number.isInteger(maxLength) || maxLength < 0)) {
      throw new InputError('maxLength', `expected a non-negative integer, found ${maxLength}`);
    }
    if (padToMultipleOf !== undefined && (!Number.isInteger(padToMultipleOf) || padToMultipleOf <= 0)) {
      throw new InputError('padToMultipleOf', `expected a positive integer, found ${padToMultipleOf}`);
    }
    if (options.paddingSide !== undefined) checkSide(options.paddingSide, 'paddingSide');
    // Backward-compatible Python behaviour: max_length alone turns truncation on.
    if (maxLength !== undefined && padding === false && truncation === undefined) truncation = true;

    let padStrategy: 'none' | 'longest' | 'max_length';
    if (padding === true || padding === 'longest') padStrategy = 'longest';
    else if (padding === 'max_length') padStrategy = 'max_length';
    else if (padding === false || padding === 'do_not_pad') padStrategy = 'none';
    else {
      const found = JSON.stringify(padding);
      throw new InputError('padding', `expected true, false, "longest", "max_length" or "do_not_pad", found ${found}`);
    }

    let length = maxLength;
    let truncate = truncation === true;
    if (length === undefined) {
      const limit = this.modelMaxLength > LARGE_INTEGER ? undefined : this.modelMaxLength;
      if (padStrategy === 'max_length') {
        if (limit === undefined) padStrategy = 'none';
        else length = limit;
      }
      if (truncate) {
        if (limit === undefined) truncate = false;
        else length = limit;
      }
    }
    if (padStrategy !== 'none' && this.padTokenId === undefined) {
      throw new InputError('padding', 'asked to pad but the tokenizer has no pad token (tokenizer_config pad_token)');
    }
    const multiple = padToMultipleOf;
    const bothActive = truncate && padStrategy !== 'none';
    if (bothActive && multiple !== undefined && length !== undefined && length % multiple !== 0) {
      throw new InputError('padToMultipleOf', `truncation length ${length} is not a multiple of ${multiple}`);
    }
    return {
      padTo: padStrategy === 'longest' ? 'longest' : padStrategy === 'max_length' ? length : undefined,
      truncateTo: truncate ? length : undefined,
    };
  }

  /** Text → ids without special tokens: added-token split, Metaspace, BPE per chunk. */
  private encodeText(text: string): number[] {
    const ids: number[] = [];
    for (const segment of this.matcher.split(text)) {
      if (segment.added) {
        ids.push(segment.added.id);
        continue;
      }
      let word = segment.text.replaceAll(' ', METASPACE);
      const prepend = this.prependScheme === 'always' || (this.prependScheme === 'first' && segment.start === 0);
      if (prepend && !word.startsWith(METASPACE)) word = METASPACE + word;
      for (const id of this.model.tokenize(word)) ids.push(id);
    }
    return ids;
  }

  // ---- decoding ------------------------------------------------------------------------------------------------

  /**
   * Python `decode`. Ids outside the vocabulary are dropped, as the Rust tokenizer does; non-integer or negative
   * ids are an InputError.
   */
  decode(ids: number[], options: DecodeOptions = {}): string {
    const { text } = this.decodeRaw(ids, options.skipSpecialTokens ?? false, 'ids');
    return this.addPrefixSpace && text.startsWith(' ') ? text.slice(1) : text;
  }

  batchDecode(sequences: number[][], options: DecodeOptions = {}): string[] {
    return sequences.map((ids) => this.decode(ids, options));
  }

  /** Streaming decoder for generation: see `DecodeStream`. */
  decodeStream(options: { skipSpecialTokens?: boolean } = {}): DecodeStream {
    return new DecodeStream(this, options.skipSpecialTokens ?? false);
  }

  /**
   * Decoded text before the leading-space strip, and the length of the byte-token run that ends it (used by
   * `decode` and `DecodeStream`).
   */
  decodeRaw(ids: number[], skipSpecialTokens: boolean, argument: string): { text: string; trailingBytes: number } {
    if (!Array.isArray(ids)) throw new InputError(argument, `expected an array of token ids, found ${describe(ids)}`);
    const tokens: string[] = [];
    ids.forEach((id, i) => {
      checkId(id, `${argument}[${i}]`);
      const added = this.addedById.get(id);
      if (added) {
        if (!(skipSpecialTokens && added.special)) tokens.push(added.content);
        return;
      }
      const token = this.model.idToToken[id];
      if (token !== undefined) tokens.push(token);
    });
    return decodeTokenStrings(tokens);
  }

  private idToToken(id: number): string | undefined {
    return this.addedById.get(id)?.content ?? this.model.idToToken[id];
  }

  private register(token: AddedTokenInput, source: string): void {
    if (typeof token.content !== 'string' || token.content.length === 0) {
      throw new TokenizerError(`${source}: added token ${JSON.stringify(token)} has no content`);
    }
    let id = token.id ?? this.model.tokenToId.get(token.content);
    if (id === undefined) {
      // tokenizers: one past the largest added id, or the model size when no added id lies beyond it.
      const maxAdded = Math.max(-1, ...[...this.addedById.keys()]);
      id = maxAdded >= this.model.size ? maxAdded + 1 : this.model.size;
    }
    if (!Number.isInteger(id) || id < 0) {
      throw new TokenizerError(`${source}: added token ${JSON.stringify(token.content)} has id ${id}`);
    }
    const full: AddedToken = {
      id,
      content: token.content,
      special: token.special ?? false,
      lstrip: token.lstrip ?? false,
      rstrip: token.rstrip ?? false,
      singleWord: token.singleWord ?? false,
    };
    const previous = this.added.get(full.content);
    if (previous) this.addedById.delete(previous.id);
    this.added.set(full.content, full);
    this.addedById.set(full.id, full);
  }
}

/**
 * Incremental decoding for streamed generation. `push(id)` returns only text that is final: while the last
 * tokens are byte-fallback tokens that do not yet form a complete UTF-8 character (an emoji arrives as
 * `<0xF0> <0x9F> <0x98> <0x80>`), it returns "" and keeps them. `flush()` returns whatever is held at the end.
 *
 * The concatenated output equals `decode(allIds)` except for a run of byte tokens that is not valid UTF-8 as a
 * whole, e.g. a complete "€" followed by a stray lead byte: `decode` replaces the entire run with one U+FFFD per
 * byte, while the stream has already emitted the part that was valid when it arrived (the Rust `DecodeStream` of
 * HF tokenizers makes the same trade-off).
 */
export class DecodeStream {
  private pending: number[] = [];
  /** Whether the leading-space strip has been consumed (it applies once, to the start of the whole text). */
  private started = false;

  constructor(
    private readonly tokenizer: LlamaTokenizer,
    private readonly skipSpecialTokens: boolean,
  ) {}

  push(id: number): string {
    this.pending.push(id);
    const { text, trailingBytes } = this.tokenizer.decodeRaw(this.pending, this.skipSpecialTokens, 'id');
    // A UTF-8 character has at most 4 bytes: a shorter invalid run at the end may still be completed.
    if (text.endsWith('\ufffd') && trailingBytes > 0 && trailingBytes < 4) return '';
    return this.emit(text);
  }

  /** Text still held (an unfinished character at the end of generation decodes to U+FFFD). */
  flush(): string {
    if (this.pending.length === 0) return '';
    return this.emit(this.tokenizer.decodeRaw(this.pending, this.skipSpecialTokens, 'id').text);
  }

  private emit(raw: string): string {
    this.pending = [];
    if (raw.length === 0) return '';
    let text = raw;
    if (!this.started && this.tokenizer.addPrefixSpace && text.startsWith(' ')) text = text.slice(1);
    this.started = true;
    return text;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Reading a model directory

type JsonObject = Record<string, unknown>;
type SpecialNames = Pick<LlamaTokenizerOptions, 'bosToken' | 'eosToken' | 'unkToken' | 'padToken'>;

function readModelDir(files: ModelFiles): LlamaTokenizerData {
  const tokenizerFile = files.where('tokenizer.json');
  const tokenizerText = readText(files, 'tokenizer.json');
  if (tokenizerText === undefined) {
    throw new TokenizerError(
      `${tokenizerFile}: file not found; a Llama tokenizer needs tokenizer.json (the HF tokenizers format)`,
    );
  }
  const tj = asObject(parseJson(tokenizerText, tokenizerFile), tokenizerFile, 'top level');
  const configFile = files.where('tokenizer_config.json');
  const config = readOptionalJson(files, 'tokenizer_config.json');

  const model = asObject(tj.model, tokenizerFile, '"model"');
  if (model.type !== 'BPE') {
    const found = JSON.stringify(model.type);
    throw new TokenizerError(`${tokenizerFile}: model.type is ${found}, expected "BPE" (SentencePiece BPE, as Llama)`);
  }
  const vocab = model.vocab;
  if (vocab === null || typeof vocab !== 'object' || Array.isArray(vocab)) {
    throw new TokenizerError(`${tokenizerFile}: model.vocab must map tokens to ids, found ${describe(vocab)}`);
  }
  if (!Array.isArray(model.merges)) {
    throw new TokenizerError(`${tokenizerFile}: model.merges must be an array, found ${describe(model.merges)}`);
  }

  const names: SpecialNames = {
    bosToken: tokenName(config.bos_token, configFile, 'bos_token'),
    eosToken: tokenName(config.eos_token, configFile, 'eos_token'),
    unkToken: tokenName(config.unk_token, configFile, 'unk_token'),
    padToken: tokenName(config.pad_token, configFile, 'pad_token'),
  };
  let addedTokens: AddedTokenInput[];
  if (config.added_tokens_decoder !== undefined) {
    addedTokens = parseAddedTokensDecoder(config.added_tokens_decoder, configFile);
  } else {
    // transformers' legacy branch: special_tokens_map.json overrides the config's names, and the added tokens come
    // from added_tokens.json and tokenizer.json.
    Object.assign(names, readSpecialTokensMap(files, 'special_tokens_map.json'));
    addedTokens = [
      ...readAddedTokensJson(files, 'added_tokens.json', names),
      ...parseJsonAddedTokens(tj.added_tokens, tokenizerFile),
    ];
  }

  const extra = config.extra_special_tokens;
  const options: LlamaTokenizerOptions = {
    ...names,
    addBosToken: optionalBool(config.add_bos_token, configFile, 'add_bos_token'),
    addEosToken: optionalBool(config.add_eos_token, configFile, 'add_eos_token'),
    legacy: optionalBool(config.legacy, configFile, 'legacy'),
    addPrefixSpace: optionalBool(config.add_prefix_space, configFile, 'add_prefix_space'),
    paddingSide:
      config.padding_side === undefined
        ? jsonDirection(tj.padding)
        : checkSide(config.padding_side, 'padding_side', configFile),
    truncationSide:
      config.truncation_side === undefined
        ? jsonDirection(tj.truncation)
        : checkSide(config.truncation_side, 'truncation_side', configFile),
    modelMaxLength: optionalNumber(config.model_max_length, configFile, 'model_max_length'),
    extraSpecialTokens: parseExtraSpecialTokens(extra ?? config.additional_special_tokens, configFile),
    imageToken: placeholderName(config, 'image_token', configFile),
    videoToken: placeholderName(config, 'video_token', configFile),
  };
  return {
    ...dropUndefined(options),
    vocab: vocab as Record<string, number>,
    merges: model.merges as Array<string | [string, string]>,
    addedTokens,
    postProcessor: parsePostProcessor(tj.post_processor, tokenizerFile),
  };
}

function readSpecialTokensMap(files: ModelFiles, name: string): SpecialNames {
  const file = files.where(name);
  const map = readOptionalJson(files, name);
  const names: SpecialNames = {
    bosToken: tokenName(map.bos_token, file, 'bos_token'),
    eosToken: tokenName(map.eos_token, file, 'eos_token'),
    unkToken: tokenName(map.unk_token, file, 'unk_token'),
    padToken: tokenName(map.pad_token, file, 'pad_token'),
  };
  return dropUndefined(names);
}

/** Legacy `{ token: id }` file; tokens named as special tokens are special. */
function readAddedTokensJson(files: ModelFiles, name: string, names: SpecialNames): AddedTokenInput[] {
  const file = files.where(name);
  const special = new Set(Object.values(names).filter((v): v is string => typeof v === 'string'));
  return Object.entries(readOptionalJson(files, name)).map(([content, id]) => {
    if (!Number.isInteger(id) || (id as number) < 0) {
      throw new TokenizerError(`${file}: id of ${JSON.stringify(content)} is ${describe(id)}, expected an integer`);
    }
    return { content, id: id as number, special: special.has(content) };
  });
}

/** A file's text, undefined when absent; a TokenizerError when it exists but cannot be read. */
function readText(files: ModelFiles, name: string): string | undefined {
  try {
    return files.text(name);
  } catch (err) {
    throw new TokenizerError(`${files.where(name)}: cannot read (${(err as Error).message})`);
  }
}

function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new TokenizerError(`${file}: malformed JSON (${(err as Error).message})`);
  }
}

function readOptionalJson(files: ModelFiles, name: string): JsonObject {
  const text = readText(files, name);
  const file = files.where(name);
  return text === undefined ? {} : asObject(parseJson(text, file), file, 'top level');
}

function asObject(value: unknown, file: string, what: string): JsonObject {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new TokenizerError(`${file}: ${what} must be a JSON object, found ${describe(value)}`);
  }
  return value as JsonObject;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'string' ? JSON.stringify(value.slice(0, 40)) : typeof value;
}

/** A special token as tokenizer_config writes it: a string, `{ "content": ... }`, or null. */
function tokenName(value: unknown, file: string, field: string): string | null | undefined {
  if (value === undefined) return undefined;
  if (value === null || typeof value === 'string') return value;
  const content = typeof value === 'object' ? (value as JsonObject).content : undefined;
  if (typeof content === 'string') return content;
  throw new TokenizerError(`${file}: "${field}" must be a string or {"content": ...}, found ${describe(value)}`);
}

function optionalBool(value: unknown, file: string, field: string): boolean | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') {
    throw new TokenizerError(`${file}: "${field}" must be true or false, found ${describe(value)}`);
  }
  return value;
}

function optionalNumber(value: unknown, file: string, field: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !(value > 0)) {
    throw new TokenizerError(`${file}: "${field}" must be a positive number, found ${describe(value)}`);
  }
  return value;
}

function checkSide(value: unknown, field: string, file?: string): Side {
  if (value === 'left' || value === 'right') return value;
  const message = `expected "left" or "right", found ${JSON.stringify(value)}`;
  throw file ? new TokenizerError(`${file}: "${field}" ${message}`) : new InputError(field, message);
}

function checkId(id: unknown, argument: string): void {
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
    throw new InputError(argument, `expected a non-negative integer token id, found ${String(id)}`);
  }
}

function jsonDirection(value: unknown): Side | undefined {
  const direction = value && typeof value === 'object' ? (value as JsonObject).direction : undefined;
  return direction === 'Left' ? 'left' : direction === 'Right' ? 'right' : undefined;
}

function dropUndefined<T extends object>(obj: T): T {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as T;
}

function parseAddedToken(raw: unknown, file: string, where: string, id?: number): AddedTokenInput {
  const obj = asObject(raw, file, where);
  if (typeof obj.content !== 'string') {
    throw new TokenizerError(`${file}: ${where}.content must be a string, found ${describe(obj.content)}`);
  }
  const tokenId = id ?? obj.id;
  if (!Number.isInteger(tokenId) || (tokenId as number) < 0) {
    throw new TokenizerError(`${file}: ${where} has id ${describe(tokenId)}, expected a non-negative integer`);
  }
  return {
    id: tokenId as number,
    content: obj.content,
    special: obj.special === true,
    lstrip: obj.lstrip === true,
    rstrip: obj.rstrip === true,
    singleWord: obj.single_word === true,
  };
}

function parseAddedTokensDecoder(raw: unknown, file: string): AddedTokenInput[] {
  const obj = asObject(raw, file, '"added_tokens_decoder"');
  return Object.entries(obj)
    .map(([id, token]) => {
      if (!/^\d+$/.test(id)) {
        throw new TokenizerError(`${file}: added_tokens_decoder key ${JSON.stringify(id)} is not a token id`);
      }
      return parseAddedToken(token, file, `added_tokens_decoder["${id}"]`, Number(id));
    })
    .sort((a, b) => (a.id as number) - (b.id as number));
}

function parseJsonAddedTokens(raw: unknown, file: string): AddedTokenInput[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw new TokenizerError(`${file}: "added_tokens" must be an array, found ${describe(raw)}`);
  return raw.map((token, i) => parseAddedToken(token, file, `added_tokens[${i}]`));
}

/** `image_token` / `video_token`, top level or in transformers 5's `extra_special_tokens: { image_token: ... }`. */
function placeholderName(config: JsonObject, key: string, file: string): string | undefined {
  const extra = config.extra_special_tokens;
  const nested = extra && typeof extra === 'object' && !Array.isArray(extra) ? (extra as JsonObject)[key] : undefined;
  return tokenName(config[key] ?? nested, file, key) ?? undefined;
}

function parseExtraSpecialTokens(raw: unknown, file: string): string[] | undefined {
  if (raw === undefined || raw === null) return undefined;
  const values = Array.isArray(raw) ? raw : typeof raw === 'object' ? Object.values(raw as JsonObject) : undefined;
  if (!values) {
    throw new TokenizerError(`${file}: "extra_special_tokens" must be a list or an object, found ${describe(raw)}`);
  }
  return values.map((v, i) => {
    const name = tokenName(v, file, `extra_special_tokens[${i}]`);
    if (typeof name !== 'string') {
      throw new TokenizerError(`${file}: extra_special_tokens[${i}] must be a token, found ${describe(v)}`);
    }
    return name;
  });
}

/** TemplateProcessing's single-sequence template → special tokens before and after the text. */
function parsePostProcessor(raw: unknown, file: string): { prefix: string[]; suffix: string[] } | undefined {
  if (raw === undefined || raw === null) return undefined;
  const pp = asObject(raw, file, '"post_processor"');
  if (pp.type !== 'TemplateProcessing' || !Array.isArray(pp.single)) {
    const found = JSON.stringify(pp.type);
    throw new TokenizerError(`${file}: post_processor type ${found} is not supported; expected TemplateProcessing`);
  }
  const prefix: string[] = [];
  const suffix: string[] = [];
  let seenSequence = false;
  for (const piece of pp.single as unknown[]) {
    const item = asObject(piece, file, 'post_processor.single[]');
    if ('Sequence' in item) {
      seenSequence = true;
    } else if ('SpecialToken' in item) {
      const id = asObject(item.SpecialToken, file, 'post_processor SpecialToken').id;
      if (typeof id !== 'string') throw new TokenizerError(`${file}: post_processor SpecialToken without a token name`);
      (seenSequence ? suffix : prefix).push(id);
    }
  }
  return { prefix, suffix };
}
