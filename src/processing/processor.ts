/**
 * VideoLlavaProcessor: prompts + images + videos → the tensors the model takes, as transformers 5.24's
 * `VideoLlavaProcessor.__call__` (ProcessorMixin) makes them:
 *
 *   1. the prompts must hold exactly one `<image>` per image and one `<video>` per video, counted over the whole
 *      batch (else an error, as Python's `validate_inputs`);
 *   2. images go through the Pillow-exact image pipeline → pixel_values_images [N, 3, H, W];
 *      videos are decoded (frames sampled as np.arange(0, total, total / numFrames)) and every frame goes through
 *      the same pipeline with the video processor's settings → pixel_values_videos [N, T, 3, H, W]. That is the
 *      slow Pillow path of transformers v4.41–4.51, the parity target (spec §4.4); 5.24 itself uses torchvision;
 *   3. the k-th `<image>` of the batch (row 0 first) becomes (H/p)·(W/p) + extra − (1 if strategy "default")
 *      copies of itself, the k-th `<video>` becomes T · ((H/p)·(W/p) + extra) copies (videos keep CLS);
 *   4. the tokenizer encodes the expanded prompts (no padding unless asked; rows of different lengths are an
 *      error then, as Python's tensor conversion); afterwards every row must still hold as many placeholder ids
 *      as its text holds placeholders, which truncation can break.
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError, InputError } from '../errors';
import { ModelSourceOptions, PROCESSOR_FILES, platform } from '../platform';
import { ModelFiles } from '../platform/files';
import { FieldReader, Json } from '../models/config_fields';
import { ApplyChatTemplateOptions, ChatMessage, applyChatTemplate, loadChatTemplate } from './chat_template';
import {
  ImageInput,
  ImagePreprocessorConfig,
  RawImage,
  decodeImage,
  loadImagePreprocessorConfig,
  parseImagePreprocessorConfig,
  preprocessImage,
  preprocessImages,
  resizeOutputSize,
} from './image';
import { VideoSource } from './frames';
import { DecodeOptions, EncodeOptions, LlamaTokenizer } from './tokenizer';
import { HorizontalFlipOptions, preprocessLanguageBindVideos } from './languagebind';

/** The processor's own fields of processor_config.json; defaults are the Python `__init__` defaults. */
export interface ProcessorConfig {
  patch_size: number; // 14
  vision_feature_select_strategy: 'default' | 'full'; // "default": images lose their CLS row (videos never do)
  num_additional_image_tokens: number; // 1 (CLS)
  image_token: string; // "<image>"; a tokenizer that declares image_token wins
  video_token: string; // "<video>"; likewise
  video_preprocessing: 'hf' | 'languagebind'; // not a transformers field: 'languagebind' = the original pipeline
}

export const PROCESSOR_DEFAULTS: ProcessorConfig = {
  patch_size: 14,
  vision_feature_select_strategy: 'default',
  num_additional_image_tokens: 1,
  image_token: '<image>',
  video_token: '<video>',
  video_preprocessing: 'hf',
};

/**
 * A video to decode (a file path in Node, a URL or Blob in the page), or frames already decoded (RGB) with,
 * optionally, their frame numbers.
 */
export type VideoInput = VideoSource | { frames: RawImage[]; indices?: number[] };

export interface ProcessorCallOptions extends EncodeOptions {
  images?: ImageInput | ImageInput[];
  videos?: VideoInput | VideoInput[];
  /** Frames sampled per video file (default 8), as np.arange(0, total, total / numFrames).astype(int). */
  numFrames?: number;
  /**
   * 'languagebind': the original Video-LLaVA video pipeline (./languagebind.ts: linspace frames, normalise, then
   * bilinear short-side resize, centre crop) instead of the HF one. Default: processor_config.json's
   * video_preprocessing, else 'hf'.
   */
  videoPreprocessing?: 'hf' | 'languagebind';
  /** LanguageBind pipeline only: its random horizontal flip, seeded (off unless given). */
  horizontalFlip?: HorizontalFlipOptions;
}

/** What the processor returns. The caller owns the tensors (see `disposeProcessorOutput`). */
export interface ProcessorOutput {
  inputIds: number[][]; // [B, L]
  attentionMask: number[][]; // [B, L]
  pixelValuesImages?: tf.Tensor4D; // [N_images, 3, H, W]
  pixelValuesVideos?: tf.Tensor5D; // [N_videos, T, 3, H, W]
  /** The frame numbers kept for each video [N_videos, T] (each sampled index once, ascending). */
  frameIndices?: number[][];
}

export function disposeProcessorOutput(out: ProcessorOutput): void {
  out.pixelValuesImages?.dispose();
  out.pixelValuesVideos?.dispose();
}

export function parseProcessorConfig(raw: Json, file?: string): ProcessorConfig {
  const f = new FieldReader(raw, '', file);
  const config: ProcessorConfig = {
    patch_size: f.int('patch_size', PROCESSOR_DEFAULTS.patch_size),
    vision_feature_select_strategy: f.str('vision_feature_select_strategy', 'default', ['default', 'full'] as const),
    num_additional_image_tokens: f.int('num_additional_image_tokens', PROCESSOR_DEFAULTS.num_additional_image_tokens),
    image_token: f.str('image_token', PROCESSOR_DEFAULTS.image_token),
    video_token: f.str('video_token', PROCESSOR_DEFAULTS.video_token),
    video_preprocessing: f.str('video_preprocessing', 'hf', ['hf', 'languagebind'] as const),
  };
  if (config.patch_size < 1) throw new ConfigError('patch_size', `expected a positive integer, found ${config.patch_size}`, file);
  if (config.num_additional_image_tokens < 0) {
    throw new ConfigError('num_additional_image_tokens', `expected ≥ 0, found ${config.num_additional_image_tokens}`, file);
  }
  return config;
}

function readJsonIfExists(files: ModelFiles, name: string): Json | null {
  const file = files.where(name);
  let raw: unknown;
  try {
    const text = files.text(name);
    if (text === undefined) return null;
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(name, `invalid JSON: ${(e as Error).message}`, file);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(name, 'expected a JSON object', file);
  }
  return raw as Json;
}

/** `processor_config.json`'s nested sub-processor config (transformers 5 save format), if present. */
function nestedConfig(raw: Json | null, key: string, file: string): Json | null {
  return raw ? new FieldReader(raw, '', file).object(key) : null;
}

/** The video processor's settings; frames are sampled here, so a config that samples again is refused. */
function parseVideoConfig(raw: Json, file: string): ImagePreprocessorConfig {
  if (raw.do_sample_frames === true) {
    throw new ConfigError('do_sample_frames', 'true is not supported: frames are sampled by numFrames here', file);
  }
  return parseImagePreprocessorConfig(raw, file);
}

/** image_token / video_token declared by tokenizer_config.json (top level or in extra_special_tokens). */
function tokenizerPlaceholder(tokenizerConfig: Json | null, key: string): string | undefined {
  if (!tokenizerConfig) return undefined;
  const extra = tokenizerConfig.extra_special_tokens;
  const nested = extra && typeof extra === 'object' && !Array.isArray(extra) ? (extra as Json)[key] : undefined;
  const value = tokenizerConfig[key] ?? nested;
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && typeof (value as Json).content === 'string') return (value as Json).content as string;
  return undefined;
}

export class VideoLlavaProcessor {
  constructor(
    readonly tokenizer: LlamaTokenizer,
    readonly imageConfig: ImagePreprocessorConfig,
    readonly config: ProcessorConfig = PROCESSOR_DEFAULTS,
    readonly chatTemplate?: string,
    readonly videoConfig: ImagePreprocessorConfig = imageConfig,
  ) {}

  /**
   * Loads a processor folder as transformers 5.24 does: the tokenizer files; the image processor settings from
   * processor_config.json's "image_processor" (5.x format) or else preprocessor_config.json (the -hf checkpoint's
   * format); the video processor's from "video_processor", else video_preprocessor_config.json, else
   * preprocessor_config.json; the processor fields from processor_config.json. Where Python would fail for want
   * of an image processor config, the checkpoint's defaults are used.
   */
  static async fromPretrained(idOrDir: string | ModelFiles, options: Omit<ModelSourceOptions, 'allowPatterns'> = {}): Promise<VideoLlavaProcessor> {
    // A Hub id resolves through the shared cache, fetching only the tokenizer and processor files.
    const dir = typeof idOrDir === 'string' ? await platform.modelFiles(idOrDir, { ...options, allowPatterns: [...PROCESSOR_FILES] }) : idOrDir;
    const tokenizer = LlamaTokenizer.fromPretrained(dir);
    const file = dir.where('processor_config.json');
    const raw = readJsonIfExists(dir, 'processor_config.json');

    const nestedImage = nestedConfig(raw, 'image_processor', file);
    const imageConfig = nestedImage ? parseImagePreprocessorConfig(nestedImage, file) : loadImagePreprocessorConfig(dir);
    const nestedVideo = nestedConfig(raw, 'video_processor', file);
    const videoFile = dir.where('video_preprocessor_config.json');
    const videoRaw = nestedVideo ?? readJsonIfExists(dir, 'video_preprocessor_config.json');
    const videoConfig = videoRaw ? parseVideoConfig(videoRaw, nestedVideo ? file : videoFile) : loadImagePreprocessorConfig(dir);

    const config = raw ? parseProcessorConfig(raw, file) : { ...PROCESSOR_DEFAULTS };
    const tokenizerConfig = readJsonIfExists(dir, 'tokenizer_config.json');
    config.image_token = tokenizerPlaceholder(tokenizerConfig, 'image_token') ?? config.image_token;
    config.video_token = tokenizerPlaceholder(tokenizerConfig, 'video_token') ?? config.video_token;
    return new VideoLlavaProcessor(tokenizer, imageConfig, config, loadChatTemplate(dir), videoConfig);
  }

  /** Python `processor.apply_chat_template(messages, tokenize=False)`: the tokenizer's special tokens are variables. */
  applyChatTemplate(messages: ChatMessage[], options: ApplyChatTemplateOptions = {}): string {
    return applyChatTemplate(messages, {
      chatTemplate: this.chatTemplate,
      specialTokens: this.tokenizer.specialTokensMap,
      ...options,
    });
  }

  decode(ids: number[], options?: DecodeOptions): string {
    return this.tokenizer.decode(ids, options);
  }

  batchDecode(ids: number[][], options?: DecodeOptions): string[] {
    return this.tokenizer.batchDecode(ids, options);
  }

  /** Placeholder tokens for one image, or for one frame of a video, whose pixel values are h × w. */
  tokensPerFrame(h: number, w: number, kind: 'image' | 'video'): number {
    const { patch_size: p, num_additional_image_tokens: extra, vision_feature_select_strategy: strategy } = this.config;
    const n = Math.floor(h / p) * Math.floor(w / p) + extra;
    return kind === 'image' && strategy === 'default' ? n - 1 : n;
  }

  async call(text: string | string[], options: ProcessorCallOptions = {}): Promise<ProcessorOutput> {
    const texts = checkTexts(text);
    const images = options.images === undefined ? undefined : Array.isArray(options.images) ? options.images : [options.images];
    const videos = options.videos === undefined ? undefined : Array.isArray(options.videos) ? options.videos : [options.videos];
    const { image_token: imageToken, video_token: videoToken } = this.config;
    checkPlaceholderCount(texts, imageToken, images?.length, 'images');
    checkPlaceholderCount(texts, videoToken, videos?.length, 'videos');

    const replacements: Replacement[] = [];
    let imagePixels: { data: Float32Array; shape: [number, number, number, number] } | undefined;
    if (images && images.length > 0) {
      const p = await preprocessImages(images, this.imageConfig);
      imagePixels = { data: p.pixelValues, shape: p.shape };
      const n = this.tokensPerFrame(p.shape[2], p.shape[3], 'image');
      replacements.push({ token: imageToken, counts: images.map(() => n) });
    }
    let videoPixels: VideoPixels | undefined;
    if (videos && videos.length > 0) {
      const mode = options.videoPreprocessing ?? this.config.video_preprocessing;
      if (mode !== 'hf' && mode !== 'languagebind') throw new InputError('videoPreprocessing', `expected "hf" or "languagebind", found ${JSON.stringify(mode)}`);
      videoPixels =
        mode === 'languagebind'
          ? await preprocessLanguageBindVideos(videos, options.numFrames ?? 8, options.horizontalFlip, this.videoConfig.crop_size.height)
          : await this.preprocessVideos(videos, options.numFrames ?? 8);
      const [, T, , H, W] = videoPixels.shape;
      const n = T * this.tokensPerFrame(H, W, 'video');
      replacements.push({ token: videoToken, counts: videos.map(() => n) });
    }

    const expanded = expandPlaceholders(texts, replacements);
    const { padding, truncation, maxLength, padToMultipleOf, paddingSide, addSpecialTokens } = options;
    const enc = this.tokenizer.encodeBatch(expanded, { padding, truncation, maxLength, padToMultipleOf, paddingSide, addSpecialTokens });
    checkRectangular(enc.inputIds);
    this.checkPlaceholderIds(expanded, enc.inputIds);

    const out: ProcessorOutput = { inputIds: enc.inputIds, attentionMask: enc.attentionMask };
    if (imagePixels) out.pixelValuesImages = tf.tensor4d(imagePixels.data, imagePixels.shape, 'float32');
    if (videoPixels) {
      out.pixelValuesVideos = tf.tensor5d(videoPixels.data, videoPixels.shape, 'float32');
      out.frameIndices = videoPixels.indices;
    }
    return out;
  }

  /** Python `_check_special_mm_tokens`: per row, placeholder ids after tokenization = placeholders in the text. */
  private checkPlaceholderIds(expanded: string[], ids: number[][]): void {
    for (const [kind, token] of [['image', this.config.image_token], ['video', this.config.video_token]] as const) {
      const textCounts = expanded.map((t) => countUnmarked(t, token));
      const id = this.tokenizer.tokenToId(token);
      if (id === undefined) {
        if (textCounts.some((c) => c > 0)) {
          throw new ConfigError(`${kind}_token`, `the tokenizer has no token ${JSON.stringify(token)}`);
        }
        continue;
      }
      const idCounts = ids.map((row) => row.reduce((s, x) => s + (x === id ? 1 : 0), 0));
      if (idCounts.some((c, i) => c !== textCounts[i])) {
        throw new InputError(
          'text',
          `after tokenization the rows hold [${idCounts}] ${token} tokens but their prompts need [${textCounts}]; ` +
            'truncation (maxLength) cut placeholders: raise maxLength or turn truncation off',
        );
      }
    }
  }

  private async preprocessVideos(videos: VideoInput[], numFrames: number): Promise<VideoPixels> {
    const clips: Float32Array[][] = [];
    const indices: number[][] = [];
    let frameShape: [number, number] | undefined; // [H, W] of the pixel values of video 0
    for (const [v, video] of videos.entries()) {
      const { frames, frameIndices } = await decodeVideo(video, numFrames, v);
      const shape = this.pixelShape(frames[0]);
      if (frames.some((f) => f.width !== frames[0].width || f.height !== frames[0].height)) {
        throw new InputError(`videos[${v}]`, 'its frames differ in size');
      }
      if (clips.length > 0 && (clips[0].length !== frames.length || frameShape![0] !== shape[0] || frameShape![1] !== shape[1])) {
        throw new InputError(
          'videos',
          `video ${v} gives ${frames.length} frames of ${shape.join('x')} pixel values but video 0 gives ` +
            `${clips[0].length} of ${frameShape!.join('x')}; the videos of one call are stacked and must match`,
        );
      }
      frameShape = shape;
      clips.push(frames.map((f) => preprocessImage(f, this.videoConfig)));
      indices.push(frameIndices);
    }
    const T = clips[0].length;
    const [H, W] = frameShape!;
    const frameSize = 3 * H * W;
    const data = new Float32Array(videos.length * T * frameSize);
    clips.forEach((clip, v) => clip.forEach((f, t) => data.set(f, (v * T + t) * frameSize)));
    return { data, shape: [videos.length, T, 3, H, W], indices };
  }

  /** [H, W] of a frame's pixel values under the video settings. */
  private pixelShape(frame: RawImage): [number, number] {
    const cfg = this.videoConfig;
    if (cfg.do_center_crop) return [cfg.crop_size.height, cfg.crop_size.width];
    const r = cfg.do_resize ? resizeOutputSize(frame.width, frame.height, cfg.size) : frame;
    return [r.height, r.width];
  }
}

interface VideoPixels {
  data: Float32Array;
  shape: [number, number, number, number, number];
  indices: number[][];
}

interface Replacement {
  token: string;
  counts: number[];
}

async function decodeVideo(video: VideoInput, numFrames: number, v: number): Promise<{ frames: RawImage[]; frameIndices: number[] }> {
  if (typeof video === 'string' || (typeof Blob !== 'undefined' && video instanceof Blob)) {
    const r = await platform.readVideoFrames(video, { numFrames });
    const frames = r.frames.map((data) => ({ data, width: r.width, height: r.height, channels: 3 as const }));
    return { frames, frameIndices: r.indices };
  }
  if (!video || typeof video !== 'object' || !('frames' in video) || !Array.isArray(video.frames) || video.frames.length === 0) {
    throw new InputError(`videos[${v}]`, 'expected a file path, a Blob or { frames: RawImage[] } with at least one frame');
  }
  const frames = await Promise.all(video.frames.map((f) => decodeImage(f)));
  const frameIndices = video.indices ?? frames.map((_, i) => i);
  if (frameIndices.length !== frames.length) {
    throw new InputError(`videos[${v}].indices`, `has ${frameIndices.length} entries for ${frames.length} frames`);
  }
  return { frames, frameIndices };
}

function checkTexts(text: unknown): string[] {
  const texts = typeof text === 'string' ? [text] : text;
  if (!Array.isArray(texts) || texts.length === 0 || !texts.every((t) => typeof t === 'string')) {
    throw new InputError('text', 'expected a string or a non-empty array of strings');
  }
  return texts as string[];
}

/** Python `validate_inputs`: placeholders over the whole batch must match the media one to one. */
function checkPlaceholderCount(texts: string[], token: string, media: number | undefined, argument: string): void {
  const found = texts.reduce((s, t) => s + t.split(token).length - 1, 0);
  if (media === undefined) {
    if (found > 0) throw new InputError(argument, `the prompts contain ${found} ${token} placeholder(s) but no ${argument} were given`);
    return;
  }
  if (found !== media) {
    throw new InputError(
      argument,
      `the prompts contain ${found} ${token} placeholder(s) but ${media} ${argument} were given; they must match one to one`,
    );
  }
}

function checkRectangular(ids: number[][]): void {
  const lengths = ids.map((r) => r.length);
  if (lengths.some((l) => l !== lengths[0])) {
    throw new InputError(
      'padding',
      `the prompts encode to different lengths (${lengths.join(', ')}) and cannot be stacked; pass padding: true`,
    );
  }
}

// transformers' chat templates can mark a user-typed control token with this character in front of it
// (sanitize_control_tokens); a placeholder so marked is text, not a placeholder.
const CONTROL_MARK = '\u{F0000}';

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function countUnmarked(text: string, token: string): number {
  return (text.match(new RegExp(`(?<!${CONTROL_MARK})${escapeRegExp(token)}`, 'gu')) ?? []).length;
}

/**
 * Python `get_text_with_replacements`: the k-th occurrence of a token over the whole batch (row 0 first, left to
 * right) becomes counts[k] copies of it. Tokens without counts are left as they are.
 */
export function expandPlaceholders(texts: string[], rules: Array<{ token: string; counts: number[] }>): string[] {
  const active = rules.filter((r) => r.counts.length > 0);
  if (active.length === 0) return texts;
  const pattern = new RegExp(active.map((r) => `(?<!${CONTROL_MARK})${escapeRegExp(r.token)}`).join('|'), 'gu');
  const next = new Map(active.map((r) => [r.token, 0]));
  return texts.map((t) =>
    t.replace(pattern, (token) => {
      const rule = active.find((r) => r.token === token)!;
      const k = next.get(token)!;
      if (k >= rule.counts.length) throw new InputError('text', `more ${token} placeholders than media`);
      next.set(token, k + 1);
      return token.repeat(rule.counts[k]);
    }),
  );
}
