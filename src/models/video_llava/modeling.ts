/**
 * VideoLlavaForConditionalGeneration: two CLIP towers, a shared projector, a Llama decoder and an
 * untied LM head. Module paths follow the current transformers layout:
 *   model.image_tower.*                model.video_tower.*
 *   model.multi_modal_projector.*      model.language_model.*            lm_head.*
 */
import * as tf from '@tensorflow/tfjs';
import { InputError } from '../../errors';
import { KVCache } from '../../generation/cache';
import { Linear } from '../../layers/linear';
import { Module } from '../../layers/module';
import { ClipVisionModel } from '../clip/modeling';
import { LlamaModel } from '../llama/modeling';
import { platform } from '../../platform';
import { causalLmLoss } from '../../training/loss';
import { VideoLlavaConfig, featureLayers } from './config';
import { mergePlaceholders } from './merge';
import { VideoLlavaMultiModalProjector } from './projector';

/** Integer matrices may be given as tensors or nested arrays. */
export type IntMatrix = tf.Tensor | number[][];

export interface VideoLlavaForwardInput {
  inputIds: IntMatrix; // [B, L], placeholders already expanded (the processor does it)
  attentionMask?: IntMatrix; // [B, past + L] of 0/1; default all ones
  positionIds?: IntMatrix; // [B, L]; default past..past+L−1 (the reference's plain forward)
  pixelValuesImages?: tf.Tensor4D; // [N, 3, H, W]
  pixelValuesVideos?: tf.Tensor5D; // [N, T, 3, H, W]
  cache?: KVCache;
  /** Return the decoder hidden states (index 0 = merged inputs_embeds). */
  outputHiddenStates?: boolean;
  outputAttentions?: boolean;
  /** Return every hidden state of the vision towers (for parity reports). */
  outputVisionHiddenStates?: boolean;
  /** Compute logits only for the last n positions (0 = all). */
  logitsToKeep?: number;
  /**
   * With a cache: run the decoder over the prompt in chunks of this many positions, each attending to the
   * cache so far (same result; activations of one chunk at a time, e.g. [chunk, intermediate] instead of
   * [L, intermediate] in the MLP). Needs logitsToKeep between 1 and the last chunk's length, and no hidden
   * states, attentions or labels.
   */
  prefillChunkSize?: number;
  labels?: IntMatrix; // [B, L]; the loss predicts labels[t + 1] at t, ignoring ignore_index (-100)
}

export interface VideoLlavaForwardOutput {
  logits: tf.Tensor3D; // [B, L or logitsToKeep, vocab]
  loss?: tf.Scalar; // causal-LM loss when labels are given
  hiddenStates?: tf.Tensor3D[];
  attentions?: tf.Tensor4D[];
  /** Projected image features [N, tokens, D]. */
  imageHiddenStates?: tf.Tensor3D;
  /** Projected video features [N·T, positions, D]. */
  videoHiddenStates?: tf.Tensor3D;
  imageTowerHiddenStates?: Array<tf.Tensor3D | null>;
  videoTowerHiddenStates?: Array<tf.Tensor3D | null>;
}

export function toRows(x: IntMatrix | undefined, argument: string): number[][] | undefined {
  if (x === undefined) return undefined;
  if (Array.isArray(x)) return x;
  if (x.rank !== 2) throw new InputError(argument, `expected a 2-D [batch, length] tensor, found shape [${x.shape.join(', ')}]`);
  return x.arraySync() as number[][];
}

export class VideoLlavaModel extends Module<[], never> {
  readonly image_tower: ClipVisionModel;
  readonly video_tower: ClipVisionModel;
  readonly multi_modal_projector: VideoLlavaMultiModalProjector;
  readonly language_model: LlamaModel;

  constructor(readonly config: VideoLlavaConfig) {
    super();
    const vision = config.vision_config;
    this.image_tower = this.addModule('image_tower', new ClipVisionModel(vision));
    this.video_tower = this.addModule('video_tower', new ClipVisionModel(vision, config.video_temporal_attention?.num_frames ?? 0));
    const inDim = vision.hidden_size * featureLayers(config).length;
    this.multi_modal_projector = this.addModule(
      'multi_modal_projector',
      new VideoLlavaMultiModalProjector(inDim, config.text_config.hidden_size, config.projector_hidden_act, config.multimodal_projector_bias),
    );
    this.language_model = this.addModule('language_model', new LlamaModel(config.text_config));
  }

  forward(): never {
    throw new Error('call VideoLlavaForConditionalGeneration.forward');
  }

  /** Hidden-state indices of the feature layers, as non-negative indices into hidden_states. */
  private featureIndices(): number[] {
    const n = this.config.vision_config.num_hidden_layers;
    return featureLayers(this.config).map((k) => (k < 0 ? n + 1 + k : k));
  }

  private towerFeatures(
    tower: ClipVisionModel,
    pixels: tf.Tensor4D,
    dropCls: boolean,
    keepAll: boolean,
    framesPerVideo = 1,
  ): { features: tf.Tensor3D; towerStates?: Array<tf.Tensor3D | null> } {
    const indices = this.featureIndices();
    const numLayers = keepAll ? this.config.vision_config.num_hidden_layers : Math.max(...indices);
    const { hiddenStates } = tower.call(pixels, { numLayers, keep: (i) => keepAll || indices.includes(i), framesPerVideo });
    const features = tf.tidy(() => {
      const pool = indices.map((i) => {
        const h = hiddenStates[i] as tf.Tensor3D;
        return dropCls ? tf.slice(h, [0, 1, 0], [-1, -1, -1]) : h;
      });
      const selected = pool.length === 1 ? pool[0] : tf.concat(pool, -1);
      return this.multi_modal_projector.call(selected) as tf.Tensor3D;
    });
    if (keepAll) return { features, towerStates: hiddenStates };
    tf.dispose(hiddenStates.filter((h): h is tf.Tensor3D => h !== null));
    return { features };
  }

  /** Projected image features [N, tokens, D]; CLS dropped under strategy "default". */
  getImageFeatures(pixels: tf.Tensor4D, keepTowerStates = false) {
    return this.towerFeatures(this.image_tower, pixels, this.config.vision_feature_select_strategy === 'default', keepTowerStates);
  }

  /** Projected video features [N·T, positions, D]; frames keep CLS whatever the strategy. */
  getVideoFeatures(pixels: tf.Tensor5D, keepTowerStates = false) {
    if (pixels.rank !== 5) {
      throw new InputError('pixelValuesVideos', `expected [N, T, C, H, W], found [${pixels.shape.join(', ')}]`);
    }
    const [N, T, C, H, W] = pixels.shape;
    const frames = tf.reshape(pixels, [N * T, C, H, W]) as tf.Tensor4D;
    try {
      return this.towerFeatures(this.video_tower, frames, false, keepTowerStates, T);
    } finally {
      frames.dispose();
    }
  }
}

export class VideoLlavaForConditionalGeneration extends Module<[VideoLlavaForwardInput], VideoLlavaForwardOutput> {
  readonly model: VideoLlavaModel;
  readonly lm_head: Linear;

  constructor(readonly config: VideoLlavaConfig) {
    super();
    this.model = this.addModule('model', new VideoLlavaModel(config));
    const text = config.text_config;
    this.lm_head = this.addModule('lm_head', new Linear(text.hidden_size, text.vocab_size, false));
  }

  /**
   * Loads config.json and the safetensors weights of a model directory, Hub id or URL (src/platform/files.ts). An
   * original Video-LLaVA checkpoint (LlavaLlamaForCausalLM config, pytorch_model*.bin; Node only) is loaded with its
   * LanguageBind towers, as the original builder.py combines them (./original.ts; options videoTower, imageTower,
   * towerWeights).
   */
  static async fromPretrained(dir: string | import('../../platform/files').ModelFiles, options: import('./original').OriginalLoadOptions = {}): Promise<VideoLlavaForConditionalGeneration> {
    if (typeof dir === 'string') {
      const original = await platform.loadOriginalModel(dir, options);
      if (original) return original;
    }
    const { loadVideoLlava } = await import('./loading');
    return loadVideoLlava(dir, options);
  }

  /** The decoder over the merged embeddings: in one call, or in chunks through the cache (prefillChunkSize). */
  private decode(embeds: tf.Tensor3D, input: VideoLlavaForwardInput, keep: number) {
    const lm = this.model.language_model;
    const mask = toRows(input.attentionMask, 'attentionMask');
    const positions = toRows(input.positionIds, 'positionIds');
    const [B, L] = embeds.shape;
    const n = input.prefillChunkSize;
    if (n === undefined || n >= L) {
      return lm.call({ inputsEmbeds: embeds, attentionMask: mask, positionIds: positions, cache: input.cache, outputHiddenStates: input.outputHiddenStates, outputAttentions: input.outputAttentions });
    }
    const problem = chunkedPrefillError(input, L, keep);
    if (problem) throw new InputError('prefillChunkSize', problem);
    const past = input.cache!.length;
    if (mask && mask[0]?.length !== past + L) throw new InputError('attentionMask', `expected ${B} rows of ${past + L} (cached + new positions), found rows of ${mask[0]?.length}`);
    let last: tf.Tensor3D | null = null;
    for (let s = 0; s < L; s += n) {
      const len = Math.min(n, L - s);
      const chunk = tf.slice(embeds, [0, s, 0], [B, len, -1]) as tf.Tensor3D;
      try {
        const out = lm.call({
          inputsEmbeds: chunk,
          attentionMask: mask?.map((row) => row.slice(0, past + s + len)),
          positionIds: positions?.map((row) => row.slice(s, s + len)),
          cache: input.cache,
        });
        last?.dispose();
        last = out.lastHiddenState;
      } finally {
        chunk.dispose();
      }
    }
    return { lastHiddenState: last!, hiddenStates: undefined, attentions: undefined };
  }

  /**
   * The ids to embed: placeholder ids past the vocabulary (the original checkpoints have no placeholder rows) are
   * looked up as 0; their rows are replaced by features anyway.
   */
  private embeddableIds(ids: number[][]): number[][] {
    const vocab = this.config.text_config.vocab_size;
    const past = [this.config.image_token_index, this.config.video_token_index].filter((id) => id >= vocab);
    return past.length === 0 ? ids : ids.map((row) => row.map((id) => (past.includes(id) ? 0 : id)));
  }

  forward(input: VideoLlavaForwardInput): VideoLlavaForwardOutput {
    const ids = toRows(input.inputIds, 'inputIds');
    if (!ids || ids.length === 0 || ids[0].length === 0) throw new InputError('inputIds', 'expected a non-empty [batch, length] matrix');
    const lm = this.model.language_model;
    const textIds = this.embeddableIds(ids);
    lm.embed_tokens.checkIds(textIds.flat());
    const out: Partial<VideoLlavaForwardOutput> = {};
    const keepTower = input.outputVisionHiddenStates ?? false;
    const owned: tf.Tensor[] = [];
    try {
      let imageFeatures: tf.Tensor3D | null = null;
      let videoFeatures: tf.Tensor3D | null = null;
      if (input.pixelValuesImages) {
        const r = this.model.getImageFeatures(input.pixelValuesImages, keepTower);
        imageFeatures = r.features;
        out.imageTowerHiddenStates = r.towerStates;
        owned.push(imageFeatures, ...liveTensors(r.towerStates));
      }
      if (input.pixelValuesVideos) {
        const r = this.model.getVideoFeatures(input.pixelValuesVideos, keepTower);
        videoFeatures = r.features;
        out.videoTowerHiddenStates = r.towerStates;
        owned.push(videoFeatures, ...liveTensors(r.towerStates));
      }
      const tokenEmbeds = tf.tidy(() => lm.embed_tokens.call(tf.tensor2d(textIds, undefined, 'int32')) as tf.Tensor3D);
      owned.push(tokenEmbeds);
      const embeds = mergePlaceholders(tokenEmbeds, ids, [
        { tokenId: this.config.image_token_index, features: imageFeatures, argument: 'pixelValuesImages', kind: 'image' },
        { tokenId: this.config.video_token_index, features: videoFeatures, argument: 'pixelValuesVideos', kind: 'video' },
      ]);
      owned.push(embeds);
      const keep = input.logitsToKeep ?? 0;
      const decoded = this.decode(embeds, input, keep);
      const h = decoded.lastHiddenState;
      const L = h.shape[1];
      const tail = keep > 0 && keep < L ? tf.slice(h, [0, L - keep, 0], [-1, keep, -1]) : h;
      const logits = this.lm_head.call(tail) as tf.Tensor3D;
      if (tail !== h) tail.dispose();
      h.dispose();
      if (input.outputHiddenStates || keepTower) {
        out.imageHiddenStates = imageFeatures ?? undefined;
        out.videoHiddenStates = videoFeatures ?? undefined;
        // handed to the caller: no longer ours to free
        const returned = new Set<tf.Tensor>([imageFeatures, videoFeatures, ...liveTensors(out.imageTowerHiddenStates), ...liveTensors(out.videoTowerHiddenStates)].filter((t): t is tf.Tensor3D => !!t));
        owned.splice(0, owned.length, ...owned.filter((t) => !returned.has(t)));
      }
      if (input.labels) {
        owned.push(logits); // freed if the labels are rejected
        out.loss = causalLmLoss(logits, input.labels, { ignoreIndex: this.config.ignore_index });
        owned.pop();
      }
      return { ...out, logits, hiddenStates: decoded.hiddenStates, attentions: decoded.attentions };
    } finally {
      tf.dispose(owned);
    }
  }
}

function chunkedPrefillError(input: VideoLlavaForwardInput, L: number, keep: number): string | null {
  const n = input.prefillChunkSize!;
  if (!Number.isInteger(n) || n < 1) return `expected a positive integer, found ${n}`;
  if (!input.cache) return 'chunked prefill needs a cache (the chunks attend to it)';
  if (input.outputHiddenStates || input.outputAttentions || input.labels) return 'not with outputHiddenStates, outputAttentions or labels (they need every position at once)';
  const last = L - Math.floor((L - 1) / n) * n;
  if (keep < 1 || keep > last) return `logitsToKeep must be between 1 and the last chunk's ${last} positions, found ${keep}`;
  return null;
}

function liveTensors(states: Array<tf.Tensor3D | null> | undefined): tf.Tensor3D[] {
  return (states ?? []).filter((t): t is tf.Tensor3D => t !== null);
}

/** Frees every tensor of a forward output. */
export function disposeOutput(output: VideoLlavaForwardOutput): void {
  const all: Array<tf.Tensor | null | undefined> = [
    output.logits,
    output.loss,
    output.imageHiddenStates,
    output.videoHiddenStates,
    ...(output.hiddenStates ?? []),
    ...(output.attentions ?? []),
    ...(output.imageTowerHiddenStates ?? []),
    ...(output.videoTowerHiddenStates ?? []),
  ];
  tf.dispose(all.filter((t): t is tf.Tensor => !!t));
}
