/**
 * generate(): autoregressive decoding for VideoLlavaForConditionalGeneration, with the semantics of
 * transformers 5.24's `model.generate` (greedy or sampling, one batch, left padding).
 *
 *   prefill   one forward over the whole prompt with the pixel values: the vision towers run here and
 *             only here; logits are computed for the last position only (logitsToKeep: 1).
 *   decode    one forward per new token over that token alone, attending to the KV cache (keys after
 *             RoPE). It runs the language model directly: new tokens never carry vision features, and a
 *             generated id that happens to equal a placeholder id embeds as a plain token, as in the
 *             reference, which scatters features only when pixel values are passed.
 *
 * Positions follow transformers: prefill positions = cumsum(attentionMask) − 1 with padded slots set to
 * 0; every decode step adds 1 to each row's last position. Rows that finished (eos or a stop string)
 * keep receiving the pad token until every row is done, so all rows have the same length. Like
 * transformers, a prompt + new tokens longer than max_position_embeddings is allowed (RoPE extrapolates;
 * the rope fixtures generate past it), so lengths are only checked against the prompt.
 *
 * Hooks: the decode steps call language_model, its layers, embed_tokens and lm_head through Module.call,
 * so forward hooks there fire at every step; hooks on the top-level model, the towers and the projector
 * fire at prefill only. The vision time is measured with temporary hooks on the towers and the projector.
 *
 * Abort: when `signal` fires, generation stops before the next forward, frees its tensors and resolves
 * normally with `aborted: true` and finishReason 'aborted' for the rows still running (no exception:
 * the tokens made so far and the timings stay available, e.g. for a CLI on Ctrl-C).
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError, InputError } from '../errors';
import { Module } from '../layers/module';
import { FieldReader, Json } from '../models/config_fields';
import { IntMatrix, VideoLlavaForConditionalGeneration, disposeOutput, toRows } from '../models/video_llava/modeling';
import { planPromptMemory } from '../models/video_llava/memory';
import { platform } from '../platform';
import { ModelFiles } from '../platform/files';
import { BlockKVCache, DEFAULT_BLOCK_SIZE, KVCache } from './cache';
import { Rng, SelectionSettings, randomSeed, selectToken } from './sampling';
import { StopStringMatcher, TextStreamer, TokenDecoder } from './streamer';

// ---- generation_config.json --------------------------------------------------------------------------------

/** The decoding defaults a checkpoint ships (transformers' GenerationConfig), camelCased; all optional. */
export interface GenerationConfig {
  bosTokenId?: number | null;
  /** One id or several; null (or []) disables stopping at eos. */
  eosTokenId?: number | number[] | null;
  padTokenId?: number | null;
  /** Prompt + new tokens. maxNewTokens wins when both are set, as in transformers. */
  maxLength?: number;
  maxNewTokens?: number;
  minNewTokens?: number;
  doSample?: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
}

const CONFIG_FIELDS: Array<[keyof GenerationConfig, string, 'int' | 'num' | 'bool' | 'ids']> = [
  ['bosTokenId', 'bos_token_id', 'int'],
  ['eosTokenId', 'eos_token_id', 'ids'],
  ['padTokenId', 'pad_token_id', 'int'],
  ['maxLength', 'max_length', 'int'],
  ['maxNewTokens', 'max_new_tokens', 'int'],
  ['minNewTokens', 'min_new_tokens', 'int'],
  ['doSample', 'do_sample', 'bool'],
  ['temperature', 'temperature', 'num'],
  ['topK', 'top_k', 'int'],
  ['topP', 'top_p', 'num'],
  ['repetitionPenalty', 'repetition_penalty', 'num'],
];

/** Reads the fields generate() understands from a parsed generation_config.json; absent/null stay undefined. */
export function parseGenerationConfig(raw: Json, file?: string): GenerationConfig {
  const f = new FieldReader(raw, '', file);
  const out: Record<string, unknown> = {};
  for (const [key, field, kind] of CONFIG_FIELDS) {
    if (!f.has(field)) continue;
    if (kind === 'int') out[key] = f.int(field, 0);
    else if (kind === 'num') out[key] = f.num(field, 0);
    else if (kind === 'bool') out[key] = f.bool(field, false);
    else out[key] = f.intOrList(field, null);
  }
  return out as GenerationConfig;
}

/**
 * Loads `<dir>/generation_config.json` (a local directory, or any model folder: src/platform/files.ts). A missing file gives {} (the model's config.json then supplies
 * eos/pad); an unreadable or malformed one is a ConfigError naming the file and field.
 */
export async function loadGenerationConfig(dir: string | ModelFiles): Promise<GenerationConfig> {
  const files = typeof dir === 'string' ? platform.localFiles(dir) : dir;
  const file = files.where('generation_config.json');
  let text: string | undefined;
  try {
    text = files.text('generation_config.json');
  } catch (e) {
    throw new ConfigError('generation_config.json', `cannot read ${file}: ${(e as Error).message}`);
  }
  if (text === undefined) return {};
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError('generation_config.json', `invalid JSON: ${(e as Error).message}`, file);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError('generation_config.json', 'expected a JSON object', file);
  }
  return parseGenerationConfig(raw as Json, file);
}

// ---- public types ------------------------------------------------------------------------------------------

export interface GenerateInputs {
  inputIds: IntMatrix; // [B, L], placeholders expanded, left padded
  /** [B, L] of 0/1; default: inferred from padTokenId as transformers does, else all ones. */
  attentionMask?: IntMatrix;
  pixelValuesImages?: tf.Tensor4D; // [N, 3, H, W]
  pixelValuesVideos?: tf.Tensor5D; // [N, T, 3, H, W]
}

export interface GenerateOptions extends GenerationConfig {
  /** Defaults for every field above (e.g. from loadGenerationConfig); options win over it. */
  generationConfig?: GenerationConfig;
  /**
   * Seed of the sampling RNG (xoshiro128**, see sampling.ts): one stream per call, drawn for rows 0..B−1 in
   * turn at each step. Random when omitted; the seed used is reported in the result to repeat a run.
   */
  seed?: number;
  /** Stop a row when the token just generated completes one of these in its decoded new text (needs `tokenizer`). */
  stopStrings?: string[];
  /** Decodes ids for streamed text and stop strings. */
  tokenizer?: TokenDecoder;
  /** Passed to tokenizer.decode for streamed text (default true). */
  skipSpecialTokens?: boolean;
  /** Called after every new token. */
  onToken?: (event: TokenEvent) => void;
  signal?: AbortSignal;
  /** Positions per frozen KV-cache block (BlockKVCache); default 64. */
  cacheBlockSize?: number;
  /**
   * Run the prompt through the decoder in chunks of this many positions (same tokens; the activations of
   * one chunk at a time: what lets a long video prompt fit the 4 GiB wasm heap next to a big model). Default:
   * the whole prompt at once where it fits, else chunks chosen to fit (src/models/video_llava/memory.ts).
   */
  prefillChunkSize?: number;
  /** Return the raw logits that chose each token (result.logits). */
  outputLogits?: boolean;
}

export type FinishReason = 'eos' | 'stop_string' | 'length' | 'aborted';

export interface TokenEvent {
  step: number; // index of the new token (0 = chosen from the prefill)
  tokenIds: number[]; // [B]; pad for rows that had already finished
  /** [B] text completed by this step ('' when a character is still incomplete or there is no tokenizer). */
  text: string[];
  finished: boolean[]; // [B], after this step
}

export interface GenerateTimings {
  /** Vision towers + projector, inside the prefill. */
  visionMs: number;
  /** Prefill forward without the vision part. */
  prefillMs: number;
  prefillTokens: number; // B × prompt length
  /** All decode forwards (embedding → logits on the host). */
  decodeMs: number;
  decodeTokens: number; // B × number of decode forwards
}

export interface GenerateResult {
  sequences: number[][]; // [B, L + n]: prompt (as given, padding included) + new tokens
  newTokens: number[][]; // [B, n]; rows that finished early continue with the pad token
  finishReason: FinishReason[]; // [B]
  aborted: boolean;
  /** The sampling seed used (null for greedy). */
  seed: number | null;
  timings: GenerateTimings;
  /** [n][B] raw logits [vocab] that chose each token, when outputLogits is set. */
  logits?: Float32Array[][];
}

// ---- resolving options -------------------------------------------------------------------------------------

interface Plan {
  ids: number[][]; // [B, L]
  mask: number[][]; // [B, L]
  maxNewTokens: number;
  eos: number[];
  pad: number | null;
  selection: SelectionSettings;
  seed: number | null;
  stopStrings: string[];
}

type Model = VideoLlavaForConditionalGeneration;

function pick<K extends keyof GenerationConfig>(o: GenerateOptions, key: K): GenerationConfig[K] {
  return o[key] !== undefined ? o[key] : o.generationConfig?.[key];
}

function readPrompt(inputs: GenerateInputs): number[][] {
  const ids = toRows(inputs.inputIds, 'inputIds');
  if (!ids || ids.length === 0 || ids[0].length === 0) throw new InputError('inputIds', 'expected a non-empty [batch, length] prompt');
  const L = ids[0].length;
  const bad = ids.findIndex((r) => r.length !== L);
  if (bad >= 0) throw new InputError('inputIds', `rows must have equal length (left pad them): row 0 has ${L}, row ${bad} has ${ids[bad].length}`);
  return ids;
}

/** The attention mask given, or transformers' inference: ids ≠ pad when pad occurs and is not an eos id. */
function readMask(inputs: GenerateInputs, ids: number[][], pad: number | null, eos: number[]): number[][] {
  const given = toRows(inputs.attentionMask, 'attentionMask');
  const infer = pad !== null && !eos.includes(pad) && ids.some((r) => r.includes(pad));
  const mask = given ?? ids.map((r) => r.map((id) => (infer && id === pad ? 0 : 1)));
  const L = ids[0].length;
  mask.forEach((row, b) => {
    if (mask.length !== ids.length || row.length !== L) {
      throw new InputError('attentionMask', `expected [${ids.length}, ${L}] like inputIds, found ${mask.length} rows, row ${b} of length ${row.length}`);
    }
    if (row.some((m) => m !== 0 && m !== 1)) throw new InputError('attentionMask', `row ${b}: expected only 0 and 1`);
    if (row[L - 1] !== 1) throw new InputError('attentionMask', `row ${b} ends in padding: decoder-only generation needs left padding`);
  });
  return mask;
}

function eosIds(o: GenerateOptions, model: Model): number[] {
  const given = o.eosTokenId !== undefined ? o.eosTokenId : o.generationConfig?.eosTokenId;
  const eos = given !== undefined ? given : model.config.text_config.eos_token_id;
  const list = eos === null ? [] : Array.isArray(eos) ? eos : [eos];
  for (const id of list) checkId('eosTokenId', id, model);
  return list;
}

function padId(o: GenerateOptions, model: Model, eos: number[]): number | null {
  const pad = pick(o, 'padTokenId') ?? model.config.pad_token_id ?? model.config.text_config.pad_token_id ?? eos[0] ?? null;
  if (pad !== null) checkId('padTokenId', pad, model);
  return pad;
}

function checkId(argument: string, id: number, model: Model): void {
  const V = model.config.text_config.vocab_size;
  if (!Number.isInteger(id) || id < 0 || id >= V) throw new InputError(argument, `expected a token id in [0, ${V}), found ${id}`);
}

/** New tokens to make: maxNewTokens, else maxLength − L, else transformers' default of 20 (capped at max_position_embeddings). */
function newTokenBudget(o: GenerateOptions, L: number, maxPositions: number): number {
  const g = o.generationConfig ?? {};
  const tryNew = o.maxNewTokens ?? (o.maxLength === undefined ? g.maxNewTokens : undefined);
  if (tryNew !== undefined) {
    if (!Number.isInteger(tryNew) || tryNew < 0) throw new InputError('maxNewTokens', `expected an integer ≥ 0, found ${tryNew}`);
    return tryNew;
  }
  const maxLength = o.maxLength ?? g.maxLength;
  if (maxLength !== undefined) {
    if (!Number.isInteger(maxLength) || maxLength <= L) {
      throw new InputError('maxLength', `expected an integer greater than the prompt length ${L} (prompt + new tokens), found ${maxLength}`);
    }
    return maxLength - L;
  }
  return Math.max(1, Math.min(L + 20, maxPositions) - L);
}

function selectionSettings(o: GenerateOptions, eos: number[]): SelectionSettings {
  const doSample = pick(o, 'doSample') ?? false;
  const s: SelectionSettings = {
    doSample,
    temperature: pick(o, 'temperature') ?? 1,
    topK: pick(o, 'topK') ?? 50, // transformers' default when sampling
    topP: pick(o, 'topP') ?? 1,
    repetitionPenalty: pick(o, 'repetitionPenalty') ?? 1,
    minNewTokens: pick(o, 'minNewTokens') ?? 0,
    eosTokenIds: eos,
  };
  const check = (argument: string, ok: boolean, expected: string, found: number) => {
    if (!ok) throw new InputError(argument, `expected ${expected}, found ${found}`);
  };
  check('temperature', Number.isFinite(s.temperature) && s.temperature > 0, 'a number > 0 (use doSample: false for greedy)', s.temperature);
  check('topK', Number.isInteger(s.topK) && s.topK >= 0, 'an integer ≥ 0 (0 = off)', s.topK);
  check('topP', s.topP > 0 && s.topP <= 1, 'a number in (0, 1]', s.topP);
  check('repetitionPenalty', Number.isFinite(s.repetitionPenalty) && s.repetitionPenalty > 0, 'a number > 0', s.repetitionPenalty);
  check('minNewTokens', Number.isInteger(s.minNewTokens) && s.minNewTokens >= 0, 'an integer ≥ 0', s.minNewTokens);
  return s;
}

function resolvePlan(model: Model, inputs: GenerateInputs, o: GenerateOptions): Plan {
  const ids = readPrompt(inputs);
  const eos = eosIds(o, model);
  const pad = padId(o, model, eos);
  const mask = readMask(inputs, ids, pad, eos);
  const maxNewTokens = newTokenBudget(o, ids[0].length, model.config.text_config.max_position_embeddings);
  const selection = selectionSettings(o, eos);
  const stopStrings = o.stopStrings ?? [];
  if (stopStrings.length > 0 && !o.tokenizer) throw new InputError('stopStrings', 'stop strings need options.tokenizer to decode the generated ids');
  if (pad === null && stopStrings.length > 0 && ids.length > 1) {
    throw new InputError('padTokenId', 'rows stopped by a stop string are continued with the pad token: set padTokenId or eosTokenId');
  }
  const seed = selection.doSample ? (o.seed ?? randomSeed()) : null;
  return { ids, mask, maxNewTokens, eos, pad, selection, seed, stopStrings };
}

// ---- the loop ----------------------------------------------------------------------------------------------

/** cumsum(mask) − 1 per row, 0 on padded slots (transformers 5.24). */
export function positionsFromMask(mask: number[][]): number[][] {
  return mask.map((row) => {
    let seen = 0;
    return row.map((m) => (m ? seen++ : 0));
  });
}

/** Accumulates the time spent inside the forwards of `modules` (vision timing without touching the model). */
function timeModules(modules: Module[]): { ms: () => number; remove: () => void } {
  let total = 0;
  const starts = new Map<Module, number>();
  const handles = modules.flatMap((m) => [
    m.registerForwardPreHook((mod) => void starts.set(mod, performance.now())),
    m.registerForwardHook((mod) => void (total += performance.now() - (starts.get(mod) ?? performance.now()))),
  ]);
  return { ms: () => total, remove: () => handles.forEach((h) => h.remove()) };
}

/**
 * [B, 1, V] logits → one host row per batch entry; frees the tensor. Read asynchronously: WebGPU in a page cannot
 * read synchronously (tfjs-backend-webgpu's dataSync gave zeros in headless Chromium); on wasm and cpu it is the same.
 */
async function readRows(logits: tf.Tensor): Promise<Float32Array[]> {
  const [B, , V] = logits.shape;
  const data = (await logits.data()) as Float32Array;
  logits.dispose();
  return Array.from({ length: B }, (_, b) => data.slice(b * V, (b + 1) * V));
}

async function prefill(model: Model, plan: Plan, inputs: GenerateInputs, cache: KVCache, chunk?: number): Promise<Float32Array[]> {
  const out = model.call({
    prefillChunkSize: chunk,
    inputIds: plan.ids,
    attentionMask: plan.mask,
    positionIds: positionsFromMask(plan.mask),
    pixelValuesImages: inputs.pixelValuesImages,
    pixelValuesVideos: inputs.pixelValuesVideos,
    cache,
    logitsToKeep: 1,
  });
  try {
    return await readRows(out.logits);
  } finally {
    disposeOutput(out); // anything else a hook may have asked for; the logits are already freed
  }
}

/** One decode forward over `tokens` [B] at `positions` [B]; the mask already includes the new column. */
async function decodeStep(model: Model, tokens: number[], positions: number[], mask: number[][], cache: KVCache): Promise<Float32Array[]> {
  const lm = model.model.language_model;
  const embeds = tf.tidy(() => lm.embed_tokens.call(tf.tensor2d(tokens, [tokens.length, 1], 'int32')) as tf.Tensor3D);
  try {
    const { lastHiddenState } = lm.call({ inputsEmbeds: embeds, attentionMask: mask, positionIds: positions.map((p) => [p]), cache });
    const logits = tf.tidy(() => model.lm_head.call(lastHiddenState) as tf.Tensor3D);
    lastHiddenState.dispose();
    return await readRows(logits);
  } finally {
    embeds.dispose();
  }
}

/** Per-row bookkeeping: tokens, finish state, streamed text and stop strings. */
class Rows {
  readonly newTokens: number[][];
  readonly reasons: Array<FinishReason | null>;
  private readonly streamers: Array<TextStreamer | null>;
  private readonly matchers: Array<StopStringMatcher | null>;
  readonly seen: number[][]; // what the repetition penalty looks at

  constructor(
    private readonly plan: Plan,
    o: GenerateOptions,
  ) {
    const B = plan.ids.length;
    this.newTokens = Array.from({ length: B }, () => []);
    this.reasons = new Array<FinishReason | null>(B).fill(null);
    this.streamers = plan.ids.map(() => (o.tokenizer ? new TextStreamer(o.tokenizer, o.skipSpecialTokens ?? true) : null));
    this.matchers = plan.ids.map(() => (plan.stopStrings.length > 0 ? new StopStringMatcher(o.tokenizer!, plan.stopStrings) : null));
    this.seen = plan.ids.map((row, b) => row.slice(Math.max(0, plan.mask[b].indexOf(1))));
  }

  get allDone(): boolean {
    return this.reasons.every((r) => r !== null);
  }

  /** Chooses every row's next token from its logits (finished rows get the pad token). */
  choose(logits: Float32Array[], step: number, rng: Rng | null): number[] {
    return logits.map((row, b) => {
      if (this.reasons[b] !== null) return this.plan.pad!;
      return selectToken(row, this.seen[b], step, this.plan.selection, rng);
    });
  }

  /** Appends the step's tokens, updates finish reasons, returns the event for listeners. */
  record(tokens: number[], step: number): TokenEvent {
    const text = tokens.map((id, b) => {
      this.newTokens[b].push(id);
      if (this.reasons[b] !== null) return '';
      this.seen[b].push(id);
      const piece = this.streamers[b]?.put([id]) ?? '';
      if (this.plan.eos.includes(id)) this.reasons[b] = 'eos';
      else if (this.matchers[b]?.push(id)) this.reasons[b] = 'stop_string';
      else if (step + 1 >= this.plan.maxNewTokens) this.reasons[b] = 'length';
      return this.reasons[b] !== null ? piece + (this.streamers[b]?.end() ?? '') : piece;
    });
    return { step, tokenIds: tokens, text, finished: this.reasons.map((r) => r !== null) };
  }

  /** Marks the rows still running as aborted. */
  abort(): void {
    this.reasons.forEach((r, b) => {
      if (r === null) this.reasons[b] = 'aborted';
    });
  }
}

function yieldToEventLoop(): Promise<void> {
  return platform.yieldToEventLoop();
}

/** The state of one generate call: the cache, masks and positions, rows, timings. Owns the cache. */
class Run {
  readonly rows: Rows;
  readonly maxNewTokens: number;
  private readonly rng: Rng | null;
  private readonly cache: KVCache;
  private readonly vision: ReturnType<typeof timeModules>;
  private readonly mask: number[][]; // [B, L + step], grows by a column of ones per decode step
  private readonly positions: number[]; // [B], the position of each row's newest token
  private readonly timings: GenerateTimings = { visionMs: 0, prefillMs: 0, prefillTokens: 0, decodeMs: 0, decodeTokens: 0 };
  private readonly logits: Float32Array[][] = [];

  constructor(
    private readonly model: Model,
    private readonly plan: Plan,
    private readonly inputs: GenerateInputs,
    private readonly options: GenerateOptions,
  ) {
    this.rows = new Rows(plan, options);
    this.maxNewTokens = plan.maxNewTokens;
    this.rng = plan.seed !== null ? new Rng(plan.seed) : null;
    this.mask = plan.mask.map((r) => [...r]);
    this.positions = positionsFromMask(plan.mask).map((r) => r[r.length - 1]);
    this.cache = new BlockKVCache(options.cacheBlockSize ?? DEFAULT_BLOCK_SIZE);
    this.vision = timeModules([model.model.image_tower, model.model.video_tower, model.model.multi_modal_projector]);
  }

  /** Runs the forward of `step` (0 = prefill), chooses the tokens and records them. */
  async step(step: number): Promise<TokenEvent> {
    const logits = await this.timed(step, () => {
      if (step === 0) return prefill(this.model, this.plan, this.inputs, this.cache, this.options.prefillChunkSize);
      this.mask.forEach((r) => r.push(1));
      this.positions.forEach((_, b) => this.positions[b]++);
      const last = this.rows.newTokens.map((r) => r[step - 1]);
      return decodeStep(this.model, last, this.positions, this.mask, this.cache);
    });
    if (this.options.outputLogits) this.logits.push(logits.map((r) => r.slice()));
    return this.rows.record(this.rows.choose(logits, step, this.rng), step);
  }

  private async timed(step: number, forward: () => Promise<Float32Array[]>): Promise<Float32Array[]> {
    const t0 = performance.now();
    const logits = await forward();
    const ms = performance.now() - t0;
    const B = this.plan.ids.length;
    if (step === 0) {
      this.timings.visionMs = this.vision.ms();
      this.timings.prefillMs = ms - this.timings.visionMs;
      this.timings.prefillTokens = B * this.plan.ids[0].length;
    } else {
      this.timings.decodeMs += ms;
      this.timings.decodeTokens += B;
    }
    return logits;
  }

  result(aborted: boolean): GenerateResult {
    if (aborted) this.rows.abort();
    return {
      sequences: this.plan.ids.map((row, b) => [...row, ...this.rows.newTokens[b]]),
      newTokens: this.rows.newTokens,
      finishReason: this.rows.reasons.map((r) => r ?? 'length'),
      aborted,
      seed: this.plan.seed,
      timings: this.timings,
      ...(this.options.outputLogits ? { logits: this.logits } : {}),
    };
  }

  dispose(): void {
    this.cache.dispose();
    this.vision.remove();
  }
}

/**
 * Generates up to maxNewTokens tokens per row. Shapes: inputs.inputIds [B, L]; result.sequences [B, L + n].
 * Throws InputError (naming the option) on bad options, before any forward.
 */
export async function generate(model: Model, inputs: GenerateInputs, options: GenerateOptions = {}): Promise<GenerateResult> {
  const plan = resolvePlan(model, inputs, options);
  const L = plan.ids[0].length;
  const memory = planPromptMemory(model.config.text_config, plan.ids.length, L, L + plan.maxNewTokens, options.prefillChunkSize);
  const run = new Run(model, plan, inputs, { ...options, prefillChunkSize: memory.prefillChunkSize });
  try {
    for (let step = 0; step < run.maxNewTokens; step++) {
      if (options.signal?.aborted) return run.result(true);
      const event = await run.step(step); // not inside onToken?.(…): that would skip the step when there is no listener
      options.onToken?.(event);
      if (run.rows.allDone) break;
      await yieldToEventLoop(); // lets an abort (or a stream consumer) run between steps
    }
    return run.result(false);
  } finally {
    run.dispose();
  }
}

// ---- streaming ---------------------------------------------------------------------------------------------

/** An async iterable of token events; `result` resolves with the full result when generation ends. */
export interface GenerationStream extends AsyncIterable<TokenEvent> {
  readonly result: Promise<GenerateResult>;
}

/**
 * generate() as an async iterator of TokenEvents (event.text[b] is row b's new text). Leaving the
 * loop early (break/return) aborts generation; `result` then resolves with aborted: true.
 *
 *   const stream = generateStream(model, inputs, { tokenizer, maxNewTokens: 64 });
 *   for await (const ev of stream) process.stdout.write(ev.text[0]);
 *   const { timings } = await stream.result;
 */
export function generateStream(model: Model, inputs: GenerateInputs, options: GenerateOptions = {}): GenerationStream {
  const controller = new AbortController();
  const outer = options.signal;
  const forward = () => controller.abort(outer?.reason);
  if (outer?.aborted) forward();
  else outer?.addEventListener('abort', forward, { once: true });

  const queue: TokenEvent[] = [];
  let wake: (() => void) | null = null;
  let done = false;
  const notify = () => {
    wake?.();
    wake = null;
  };
  const result = generate(model, inputs, {
    ...options,
    signal: controller.signal,
    onToken: (ev) => {
      options.onToken?.(ev);
      queue.push(ev);
      notify();
    },
  }).finally(() => {
    done = true;
    outer?.removeEventListener('abort', forward);
    notify();
  });
  result.catch(() => undefined); // the error reaches the consumer through the iterator or `result`

  async function* events(): AsyncGenerator<TokenEvent> {
    try {
      for (;;) {
        if (queue.length > 0) yield queue.shift()!;
        else if (done) break;
        else await new Promise<void>((resolve) => (wake = resolve));
      }
      await result; // rethrows a generation error
    } finally {
      if (!done) controller.abort();
    }
  }
  return { result, [Symbol.asyncIterator]: events };
}
