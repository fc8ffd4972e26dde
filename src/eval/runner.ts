/**
 * Running evaluation items through one loaded model: the part shared by a local run and a queue worker.
 *
 *   prepare   media decoded (ffmpeg, a separate process: it overlaps with the model's work), frames and
 *             images preprocessed, the prompt built and tokenised; at most `decoders` videos are decoded
 *             at once, and the frames of the last few videos are kept (corpora ask several questions about
 *             one video);
 *   batch     prepared items wait in one queue; whenever the model is free it takes up to `batchSize` of
 *             them whose pixel values stack (same frame count and size) and runs one generate() over the
 *             left-padded prompts (vision features of the whole batch in one tower call, one decode step
 *             for all rows). A failing batch is rerun item by item so that the error lands on its item.
 *
 * Any error of an item (a missing or unreadable file, a prompt too long for the context, placeholders that do
 * not match the media) becomes that item's result line; nothing here throws for a bad item.
 */
import * as tf from '@tensorflow/tfjs';
import { InputError, VideoLlavaError } from '../errors';
import { GenerateOptions, GenerationConfig, generate } from '../generation/generate';
import type { VideoLlavaForConditionalGeneration } from '../models/video_llava/modeling';
import type { ChatContent, ChatMessage } from '../processing/chat_template';
import type { RawImage } from '../processing/image';
import type { VideoLlavaProcessor } from '../processing/processor';
import { readVideoFrames } from '../processing/video';
import type { EvalItem } from './manifest';
import type { ItemResult } from './results';
import { score } from './score';

/** What decides the answers: the same for every item of a run (a queue run sends it with each job). */
export interface EvalGenerationOptions {
  maxNewTokens: number;
  numFrames: number;
  doSample?: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  repetitionPenalty?: number;
  prefillChunkSize?: number;
}

export const DEFAULT_GENERATION: EvalGenerationOptions = { maxNewTokens: 60, numFrames: 8 };

/** Memory that the key/value caches of a default batch may take at full context. */
const DEFAULT_BATCH_KV_BYTES = 512 * 1024 * 1024;

/**
 * The default items per generate() call: 4 (measured faster than 1 on the demo model, benchmarks/RESULTS.md)
 * when four float32 KV caches at full context (capped at 4096 positions) fit in 512 MiB, else 1: at 7B one
 * cache of a 2k-token video prompt is already 2 GiB.
 */
export function defaultBatchSize(model: VideoLlavaForConditionalGeneration): number {
  const t = model.config.text_config;
  const perPosition = t.num_hidden_layers * 2 * t.num_key_value_heads * t.head_dim * 4;
  return 4 * perPosition * Math.min(t.max_position_embeddings, 4096) <= DEFAULT_BATCH_KV_BYTES ? 4 : 1;
}

export interface RunnerOptions {
  /** Items per generate() call (default defaultBatchSize(model)). */
  batchSize?: number;
  /** Videos decoded at the same time (default 2). */
  decoders?: number;
  /** Decoded videos kept for later items about the same file (default 4). */
  frameCacheSize?: number;
  signal?: AbortSignal;
}

interface Prepared {
  item: EvalItem;
  generation: EvalGenerationOptions;
  inputIds: number[];
  pixelValuesImages?: tf.Tensor4D;
  pixelValuesVideos?: tf.Tensor5D;
  /** Items whose pixel values stack: shapes without the leading count. */
  key: string;
  preprocessMs: number;
}

interface Waiting {
  prepared: Prepared;
  resolve: (r: ItemResult | null) => void;
}

export class ItemRunner {
  private readonly batchSize: number;
  private readonly frames: FrameCache;
  private readonly waiting: Waiting[] = [];
  private busy = false;

  constructor(
    readonly model: VideoLlavaForConditionalGeneration,
    readonly processor: VideoLlavaProcessor,
    readonly generationConfig: GenerationConfig,
    private readonly options: RunnerOptions = {},
  ) {
    this.batchSize = options.batchSize ?? defaultBatchSize(model);
    if (!(Number.isInteger(this.batchSize) && this.batchSize >= 1)) throw new InputError('batchSize', `expected an integer ≥ 1, found ${this.batchSize}`);
    this.frames = new FrameCache(options.decoders ?? 2, options.frameCacheSize ?? 4);
  }

  /** Runs one item to its result line; null when the run was aborted before the item finished. */
  async run(item: EvalItem, generation: EvalGenerationOptions): Promise<ItemResult | null> {
    if (this.options.signal?.aborted) return null;
    const prepared = await this.prepare(item, generation);
    if (!('inputIds' in prepared)) return prepared;
    if (this.options.signal?.aborted) {
      dispose(prepared);
      return null;
    }
    return new Promise((resolve) => {
      this.waiting.push({ prepared, resolve });
      void this.pump();
    });
  }

  private async prepare(item: EvalItem, generation: EvalGenerationOptions): Promise<Prepared | ItemResult> {
    const t0 = performance.now();
    try {
      const videos = await Promise.all(item.videos.map((file) => this.frames.get(file, generation.numFrames)));
      const text = this.prompt(item);
      const out = await this.processor.call(text, { images: item.images, videos });
      const prepared: Prepared = {
        item,
        generation,
        inputIds: out.inputIds[0],
        pixelValuesImages: out.pixelValuesImages,
        pixelValuesVideos: out.pixelValuesVideos,
        key: `${out.pixelValuesImages?.shape.slice(1).join('x') ?? '-'}|${out.pixelValuesVideos?.shape.slice(1).join('x') ?? '-'}|${JSON.stringify(generation)}`,
        preprocessMs: performance.now() - t0,
      };
      const context = this.model.config.text_config.max_position_embeddings;
      if (prepared.inputIds.length > context) {
        dispose(prepared);
        throw new InputError('prompt', `${prepared.inputIds.length} tokens (media placeholders expanded) exceed the model's context of ${context} positions (max_position_embeddings)`);
      }
      return prepared;
    } catch (e) {
      return failed(item, e);
    }
  }

  /** The prompt text: the conversation through the chat template, or the question (see manifest.ts). */
  private prompt(item: EvalItem): string {
    if (item.conversation) return this.processor.applyChatTemplate(item.conversation, { addGenerationPrompt: true });
    const question = item.question!;
    const { image_token: img, video_token: vid } = this.processor.config;
    if (question.includes(img) || question.includes(vid) || /^\s*USER:/.test(question)) return question;
    const content: ChatContent[] = [
      ...item.images.map(() => ({ type: 'image' as const })),
      ...item.videos.map(() => ({ type: 'video' as const })),
      { type: 'text', text: question },
    ];
    return this.processor.applyChatTemplate([{ role: 'user', content }], { addGenerationPrompt: true });
  }

  /** Runs batches while items wait; one batch at a time. */
  private async pump(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.waiting.length > 0) {
        const key = this.waiting[0].prepared.key;
        const batch: Waiting[] = [];
        for (let i = 0; i < this.waiting.length && batch.length < this.batchSize; ) {
          if (this.waiting[i].prepared.key === key) batch.push(...this.waiting.splice(i, 1));
          else i++;
        }
        const results = await this.runBatch(batch.map((w) => w.prepared));
        batch.forEach((w, i) => w.resolve(results[i]));
      }
    } finally {
      this.busy = false;
    }
  }

  /** One generate() over the batch; on an error, each item alone (so the error is the right item's). */
  private async runBatch(batch: Prepared[]): Promise<Array<ItemResult | null>> {
    try {
      return await this.generateBatch(batch);
    } catch (e) {
      if (batch.length === 1) return [failed(batch[0].item, e)];
      const results: Array<ItemResult | null> = [];
      for (const p of batch) results.push(...(await this.runBatch([p])));
      return results;
    } finally {
      batch.forEach(dispose);
    }
  }

  private async generateBatch(batch: Prepared[]): Promise<Array<ItemResult | null>> {
    const tok = this.processor.tokenizer;
    const pad = tok.padTokenId ?? this.model.config.pad_token_id ?? 0;
    const L = Math.max(...batch.map((p) => p.inputIds.length));
    const inputIds = batch.map((p) => [...new Array<number>(L - p.inputIds.length).fill(pad), ...p.inputIds]);
    const attentionMask = batch.map((p) => [...new Array<number>(L - p.inputIds.length).fill(0), ...new Array<number>(p.inputIds.length).fill(1)]);
    const stack = <T extends tf.Tensor>(ts: Array<T | undefined>): T | undefined => {
      const present = ts.filter((t): t is T => t !== undefined);
      return present.length === 0 ? undefined : present.length === 1 ? present[0] : (tf.concat(present, 0) as T);
    };
    const images = stack(batch.map((p) => p.pixelValuesImages));
    const videos = stack(batch.map((p) => p.pixelValuesVideos));
    const g = batch[0].generation;
    const options: GenerateOptions = {
      generationConfig: this.generationConfig,
      maxNewTokens: g.maxNewTokens,
      doSample: g.doSample,
      temperature: g.temperature,
      topK: g.topK,
      topP: g.topP,
      seed: g.seed,
      repetitionPenalty: g.repetitionPenalty,
      prefillChunkSize: g.prefillChunkSize,
      padTokenId: pad,
      signal: this.options.signal,
    };
    try {
      const result = await generate(this.model, { inputIds, attentionMask, pixelValuesImages: images, pixelValuesVideos: videos }, options);
      if (result.aborted) return batch.map(() => null);
      const t = result.timings;
      const B = batch.length;
      return batch.map((p, b) => {
        const ids = result.newTokens[b];
        const reason = result.finishReason[b];
        // rows that stopped early are continued with the pad token: count up to the stop
        const eosAt = reason === 'eos' ? ids.findIndex((id) => isEos(id, this.generationConfig, this.model)) : -1;
        const tokens = eosAt >= 0 ? eosAt + 1 : ids.length;
        const answer = this.processor.decode(ids.slice(0, tokens), { skipSpecialTokens: true }).trim();
        return {
          ...describe(p.item),
          answer,
          ...(p.item.answer !== undefined ? score(answer, p.item.answer) : {}),
          tokens,
          promptTokens: p.inputIds.length,
          finishReason: reason,
          timings: {
            preprocessMs: round(p.preprocessMs),
            visionMs: round(t.visionMs / B),
            prefillMs: round(t.prefillMs / B),
            decodeMs: round(t.decodeMs / B),
            batchSize: B,
          },
        };
      });
    } finally {
      if (images && batch.filter((p) => p.pixelValuesImages).length > 1) images.dispose();
      if (videos && batch.filter((p) => p.pixelValuesVideos).length > 1) videos.dispose();
    }
  }
}

function isEos(id: number, config: GenerationConfig, model: VideoLlavaForConditionalGeneration): boolean {
  const eos = config.eosTokenId !== undefined ? config.eosTokenId : model.config.text_config.eos_token_id;
  return eos === null || eos === undefined ? false : Array.isArray(eos) ? eos.includes(id) : eos === id;
}

const round = (ms: number) => Math.round(ms * 10) / 10;

function dispose(p: Prepared): void {
  p.pixelValuesImages?.dispose();
  p.pixelValuesVideos?.dispose();
  p.pixelValuesImages = undefined;
  p.pixelValuesVideos = undefined;
}

/** The fields of a result line that come from the manifest. */
function describe(item: EvalItem): Pick<ItemResult, 'id' | 'type' | 'question' | 'reference'> {
  const out: Pick<ItemResult, 'id' | 'type' | 'question' | 'reference'> = { id: item.id };
  if (item.type !== undefined) out.type = item.type;
  const question = item.question ?? lastUserText(item.conversation ?? []);
  if (question !== undefined) out.question = question;
  if (item.answer !== undefined) out.reference = item.answer;
  return out;
}

function lastUserText(messages: ChatMessage[]): string | undefined {
  const last = [...messages].reverse().find((m) => m.role === 'user');
  if (!last) return undefined;
  if (typeof last.content === 'string') return last.content;
  return last.content.flatMap((c) => (c.type === 'text' ? [c.text] : [])).join(' ');
}

/** The result line of an item that could not run: the typed error's class and message. */
export function failed(item: EvalItem, e: unknown): ItemResult {
  const error = e instanceof Error ? { type: e instanceof VideoLlavaError ? e.name : e.name || 'Error', message: e.message } : { type: 'Error', message: String(e) };
  return { ...describe(item), answer: null, tokens: 0, error };
}

/** Decoded frames of recent videos, and a limit on how many ffmpeg decodes run at once. */
class FrameCache {
  private readonly entries = new Map<string, Promise<{ frames: RawImage[]; indices: number[] }>>();
  private running = 0;
  private readonly queue: Array<() => void> = [];

  constructor(
    private readonly decoders: number,
    private readonly size: number,
  ) {
    if (!(Number.isInteger(decoders) && decoders >= 1)) throw new InputError('decoders', `expected an integer ≥ 1, found ${decoders}`);
  }

  get(file: string, numFrames: number): Promise<{ frames: RawImage[]; indices: number[] }> {
    const key = `${numFrames}:${file}`;
    let entry = this.entries.get(key);
    if (entry) {
      this.entries.delete(key); // most recently used last
    } else {
      entry = this.decode(file, numFrames);
      entry.catch(() => this.entries.get(key) === entry && this.entries.delete(key)); // a failure is not kept
    }
    this.entries.set(key, entry);
    while (this.entries.size > this.size) this.entries.delete(this.entries.keys().next().value!);
    return entry;
  }

  private async decode(file: string, numFrames: number): Promise<{ frames: RawImage[]; indices: number[] }> {
    if (this.running < this.decoders) this.running++;
    else await new Promise<void>((resolve) => this.queue.push(resolve)); // the finishing decode hands its slot over
    try {
      const r = await readVideoFrames(file, { numFrames });
      return { frames: r.frames.map((data) => ({ data, width: r.width, height: r.height, channels: 3 as const })), indices: r.indices };
    } finally {
      const next = this.queue.shift();
      if (next) next();
      else this.running--;
    }
  }
}
