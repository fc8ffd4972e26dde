/**
 * What the demo's training and evaluation scripts share: the training config (config.json here), the
 * checkpoint's side files (tokenizer, processor, chat template, generation config), the from-scratch
 * initialisation and the batches.
 */
import * as fs from 'fs';
import { promises as fsp } from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { encodeConversation, IGNORE_INDEX } from '../../src/data/conversation';
import { ExampleOptions, ShapesExample, makeExample, questionsFor, vocabularyWords } from '../../src/data/questions';
import { Rng, hashSeed } from '../../src/data/rng';
import type { SceneOptions } from '../../src/data/shapes';
import { buildWordTokenizer, TokenizerFiles } from '../../src/data/vocab';
import { ConfigError } from '../../src/errors';
import { VideoLlavaConfig, parseVideoLlavaConfig } from '../../src/models/video_llava/config';
import { VideoLlavaForConditionalGeneration } from '../../src/models/video_llava/modeling';
import { VIDEO_LLAVA_CHAT_TEMPLATE } from '../../src/processing/chat_template';
import { IMAGE_PREPROCESSOR_DEFAULTS, ImagePreprocessorConfig, preprocessImage } from '../../src/processing/image';
import { LlamaTokenizer } from '../../src/processing/tokenizer';
import { toPythonJson } from '../../src/training/json';
import type { VisionPretrainingConfig } from './pretrain_vision';

export interface TrainConfig {
  /** Seed of the weight initialisation. */
  seed: number;
  /** Seed of the training data set (held-out sets use other seeds). */
  dataSeed: number;
  model: {
    imageSize: number;
    patchSize: number;
    vision: { hiddenSize: number; intermediateSize: number; layers: number; heads: number };
    text: { hiddenSize: number; intermediateSize: number; layers: number; heads: number };
    maxPositionEmbeddings: number;
  };
  data: { renderSize: number; noise: number; imageFraction: number; eventWeights: SceneOptions['eventWeights'] };
  /** The shipped sample video: example `index` of the held-out data set `seed`, drawn as a video. */
  sample: { seed: number; index: number; file: string };
  /** Stage 1: the image tower alone, with temporary classification heads (pretrain_vision.ts). */
  visionPretraining: VisionPretrainingConfig;
  /** Stage 2: the whole model on conversations. */
  training: {
    steps: number;
    batchSize: number;
    lr: number;
    minLr: number;
    warmupSteps: number;
    weightDecay: number;
    betas: [number, number];
    maxGradNorm: number;
    checkpointEvery: number;
    logEvery: number;
    /**
     * Share of each batch given to single-turn "which way does it move?" conversations about moving shapes
     * (their own data stream, seed focusSeed). In the mixed conversations the direction of motion is a
     * small part of the loss and was not learnt at all in 1100 steps; asked alone it is learnt quickly.
     */
    directionFocus: number;
    focusSeed: number;
  };
}

/** The repository root: the nearest folder above this file with a package.json (works from a tsc outDir too). */
export function repoRoot(from = __dirname): string {
  let dir = from;
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new ConfigError('config', `no package.json above ${from}`);
    dir = up;
  }
  return dir;
}

export const CONFIG_FILE = path.join(repoRoot(), 'examples', 'train_demo', 'config.json');
/** Words that can open a chunk of text with no space before them: a question after "<video>\n", "USER" after "</s>". */
export const BARE_WORDS = ['What', 'Which', 'Where', 'How', 'Describe', 'USER'];

export async function readTrainConfig(file = CONFIG_FILE): Promise<TrainConfig> {
  try {
    return JSON.parse(await fsp.readFile(file, 'utf8')) as TrainConfig;
  } catch (e) {
    throw new ConfigError('config', `cannot read ${file}: ${(e as Error).message}`, file);
  }
}

export function demoTokenizerFiles(): TokenizerFiles {
  return buildWordTokenizer(vocabularyWords(), BARE_WORDS);
}

/** The Video-LLaVA config of the demo model (config.json as transformers reads it). */
export function modelConfigJson(cfg: TrainConfig, tok: TokenizerFiles): Record<string, unknown> {
  const { model } = cfg;
  return {
    architectures: ['VideoLlavaForConditionalGeneration'],
    model_type: 'video_llava',
    image_token_index: tok.ids.image,
    video_token_index: tok.ids.video,
    pad_token_id: tok.ids.pad,
    projector_hidden_act: 'gelu',
    vision_feature_layer: -1, // the last layer: at this size every layer should be trained
    vision_feature_select_strategy: 'default',
    multimodal_projector_bias: true,
    tie_word_embeddings: false,
    vision_config: {
      model_type: 'clip_vision_model',
      hidden_size: model.vision.hiddenSize,
      intermediate_size: model.vision.intermediateSize,
      num_hidden_layers: model.vision.layers,
      num_attention_heads: model.vision.heads,
      image_size: model.imageSize,
      patch_size: model.patchSize,
      projection_dim: model.vision.hiddenSize,
      hidden_act: 'quick_gelu',
    },
    text_config: {
      model_type: 'llama',
      vocab_size: tok.size,
      hidden_size: model.text.hiddenSize,
      intermediate_size: model.text.intermediateSize,
      num_hidden_layers: model.text.layers,
      num_attention_heads: model.text.heads,
      num_key_value_heads: model.text.heads,
      max_position_embeddings: model.maxPositionEmbeddings,
      rms_norm_eps: 1e-5,
      pad_token_id: tok.ids.pad,
      bos_token_id: tok.ids.bos,
      eos_token_id: tok.ids.eos,
      tie_word_embeddings: false,
    },
  };
}

export function modelConfig(cfg: TrainConfig, tok: TokenizerFiles): VideoLlavaConfig {
  return parseVideoLlavaConfig(modelConfigJson(cfg, tok) as Parameters<typeof parseVideoLlavaConfig>[0]);
}

export function preprocessorConfig(cfg: TrainConfig): ImagePreprocessorConfig {
  const s = cfg.model.imageSize;
  return { ...IMAGE_PREPROCESSOR_DEFAULTS, size: { shortest_edge: s }, crop_size: { height: s, width: s } };
}

/**
 * Writes everything of the checkpoint but config.json and the weights (savePretrained writes those):
 * tokenizer.json, tokenizer_config.json, preprocessor_config.json, processor_config.json,
 * chat_template.jinja, generation_config.json.
 */
export async function writeSideFiles(dir: string, cfg: TrainConfig, tok: TokenizerFiles): Promise<void> {
  await fsp.mkdir(dir, { recursive: true });
  const write = (name: string, value: unknown) => fsp.writeFile(path.join(dir, name), toPythonJson(value as never) + '\n');
  const pre = preprocessorConfig(cfg);
  await write('tokenizer.json', tok.tokenizer);
  await write('tokenizer_config.json', tok.tokenizerConfig);
  await write('preprocessor_config.json', {
    ...pre,
    image_processor_type: 'VideoLlavaImageProcessor',
    processor_class: 'VideoLlavaProcessor',
  });
  await write('processor_config.json', {
    processor_class: 'VideoLlavaProcessor',
    patch_size: cfg.model.patchSize,
    vision_feature_select_strategy: 'default',
    num_additional_image_tokens: 1,
    image_token: '<image>',
    video_token: '<video>',
  });
  await write('generation_config.json', { bos_token_id: tok.ids.bos, eos_token_id: tok.ids.eos, pad_token_id: tok.ids.pad, max_new_tokens: 16 });
  await fsp.writeFile(path.join(dir, 'chat_template.jinja'), VIDEO_LLAVA_CHAT_TEMPLATE);
}

/**
 * From-scratch initialisation, one seeded stream per parameter (so it does not depend on parameter
 * order): gains 1, biases 0, other weights N(0, 0.02), the projections that write into the residual
 * stream scaled by 1/√(2 · layers) as in GPT-2.
 */
export function initWeights(model: VideoLlavaForConditionalGeneration, seed: number): void {
  const config = model.config;
  for (const [name, p] of model.namedParameters()) {
    const n = p.size;
    const values = new Float32Array(n);
    const isGain = name.endsWith('.weight') && p.shape.length === 1 && /norm/.test(name);
    if (isGain) values.fill(1);
    else if (!name.endsWith('.bias')) {
      const towerLayers = name.includes('_tower.') ? config.vision_config.num_hidden_layers : config.text_config.num_hidden_layers;
      const residual = /\.(o_proj|down_proj|out_proj|fc2)\.weight$/.test(name);
      const std = residual ? 0.02 / Math.sqrt(2 * towerLayers) : 0.02;
      let h = 2166136261;
      for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619) >>> 0;
      const rng = new Rng(hashSeed(seed, h));
      for (let i = 0; i < n; i++) values[i] = std * rng.normal();
    }
    p.set(tf.tensor(values, [...p.shape], 'float32'), name);
  }
}


export function sampleSpec(cfg: TrainConfig): TrainConfig['sample'] {
  if (cfg.sample.seed === cfg.dataSeed) throw new ConfigError('sample.seed', `must differ from the training seed ${cfg.dataSeed}`, CONFIG_FILE);
  return cfg.sample;
}

export function exampleOptions(cfg: TrainConfig): ExampleOptions {
  return { size: cfg.data.renderSize, noise: cfg.data.noise, imageFraction: cfg.data.imageFraction, eventWeights: cfg.data.eventWeights };
}

export interface Batch {
  inputIds: number[][];
  attentionMask: number[][];
  labels: number[][];
  images?: tf.Tensor4D;
  videos?: tf.Tensor5D;
  /** Answer tokens counted by the loss. */
  targets: number;
}

/** Placeholder tokens of one image and of one video under this config (images drop CLS, frames keep it). */
export function placeholderCounts(cfg: TrainConfig, frames: number): { image: number; video: number } {
  const patches = (cfg.model.imageSize / cfg.model.patchSize) ** 2;
  return { image: patches, video: frames * (patches + 1) };
}

/**
 * A right-padded training batch of multi-turn conversations: every answerable question of each example.
 * Right padding keeps the positions of the real tokens 0, 1, … as at inference.
 */
export function makeBatch(examples: ShapesExample[], tokenizer: LlamaTokenizer, cfg: TrainConfig, pre: ImagePreprocessorConfig): Batch {
  const pad = tokenizer.padTokenId!;
  const rows = examples.map((ex) => {
    const counts = placeholderCounts(cfg, ex.frames.length);
    return encodeConversation(tokenizer, ex.facts.media, ex.qa, ex.facts.media === 'image' ? counts.image : counts.video);
  });
  const L = Math.max(...rows.map((r) => r.inputIds.length));
  const padTo = <T>(row: T[], value: T) => [...row, ...new Array<T>(L - row.length).fill(value)];
  const pixels = (list: ShapesExample[]) => {
    const frames = list.flatMap((ex) => ex.frames.map((f) => preprocessImage(f, pre)));
    const data = new Float32Array(frames.reduce((s, f) => s + f.length, 0));
    frames.forEach((f, i) => data.set(f, i * f.length));
    return data;
  };
  const s = cfg.model.imageSize;
  const imageExamples = examples.filter((ex) => ex.facts.media === 'image');
  const videoExamples = examples.filter((ex) => ex.facts.media === 'video');
  const T = videoExamples[0]?.frames.length ?? 0;
  return {
    inputIds: rows.map((r) => padTo(r.inputIds, pad)),
    attentionMask: rows.map((r) => padTo(new Array<number>(r.inputIds.length).fill(1), 0)),
    labels: rows.map((r) => padTo(r.labels, IGNORE_INDEX)),
    images: imageExamples.length > 0 ? tf.tensor4d(pixels(imageExamples), [imageExamples.length, 3, s, s]) : undefined,
    videos: videoExamples.length > 0 ? tf.tensor5d(pixels(videoExamples), [videoExamples.length, T, 3, s, s]) : undefined,
    targets: rows.reduce((n, r) => n + r.labels.filter((l) => l !== IGNORE_INDEX).length, 0),
  };
}

export function disposeBatch(b: Batch): void {
  b.images?.dispose();
  b.videos?.dispose();
}

/** Focus examples [from, from + count): moving shapes, one direction question each (phrasing drawn per example). */
export function directionExamples(cfg: TrainConfig, from: number, count: number): ShapesExample[] {
  const only = { move: 1, still: 0, appear: 0, disappear: 0, recolour: 0 };
  return Array.from({ length: count }, (_, i) => {
    const ex = makeExample(cfg.training.focusSeed, from + i, { ...exampleOptions(cfg), media: 'video', eventWeights: only });
    const rng = new Rng(hashSeed(cfg.training.focusSeed, from + i, 0xd1));
    return { ...ex, qa: questionsFor(ex.facts, rng).filter((q) => q.type === 'direction') };
  });
}

/**
 * The examples of stage-2 step `step`: batchSize · (1 − directionFocus) conversations from the main stream
 * (indices continue where the previous step's stopped) and the rest from the direction stream.
 */
export function stepExamples(cfg: TrainConfig, step: number): ShapesExample[] {
  const t = cfg.training;
  const focus = Math.round(t.batchSize * t.directionFocus);
  const main = t.batchSize - focus;
  return [...examples(cfg.dataSeed, step * main, main, exampleOptions(cfg)), ...directionExamples(cfg, step * focus, focus)];
}

/** Examples [from, from + count) of the data set `seed`. */
export function examples(seed: number, from: number, count: number, options: ExampleOptions): ShapesExample[] {
  return Array.from({ length: count }, (_, i) => makeExample(seed, from + i, options));
}
