/**
 * What model, processor, generation and training code needs from the platform it runs on. Node (./node.ts) and the
 * browser (./browser.ts) each implement it once; ./index.ts picks one (the browser bundle swaps the import).
 */
import type { BackendName } from '../backend';
import type { ResolveOptions } from '../hub/types';
import type { NativeAddon } from '../native/addon';
import type { DecodeOptions, EncodedImage, RawImage } from '../processing/image';
import type { ReadVideoOptions, VideoFrames, VideoSource } from '../processing/frames';
import type { VideoLlavaForConditionalGeneration } from '../models/video_llava/modeling';
import type { OriginalLoadOptions } from '../models/video_llava/original';
import type { ByteSource, ModelFiles } from './files';
import type { ByteCache } from './http';

/**
 * Where a model is read from. Node: a local directory, a Hub id through the shared Hugging Face cache on disk, or an
 * http(s) URL. Browser: a URL (relative to the page or absolute) or a Hub id, over HTTP, kept in Cache Storage.
 */
export interface ModelSourceOptions extends Omit<ResolveOptions, 'allowPatterns'> {
  /** Only these files are needed (Node's Hub download: processor files alone). */
  allowPatterns?: string[];
  /** Where fetched bytes are kept (HTTP): default the browser's Cache Storage, nothing in Node; null: nowhere. */
  cache?: ByteCache | null;
}

export interface Platform {
  readonly name: 'node' | 'browser';
  /** The backends this platform can run, default first. */
  readonly backends: readonly BackendName[];
  /** An environment variable (Node); always undefined in the browser. */
  env(name: string): string | undefined;

  /** A model folder by directory, Hub id or URL (see ModelSourceOptions). */
  modelFiles(idOrDir: string, options?: ModelSourceOptions): Promise<ModelFiles>;
  /** A local directory as a model folder, unchecked (Node; the browser refuses it). */
  localFiles(dir: string): ModelFiles;
  /** Whether a local path is a directory; rejects when it cannot be read (Node). */
  isDirectory(dir: string): Promise<boolean>;
  /** A local file (Node) or URL (browser) opened for reads by byte range. */
  openFile(file: string): Promise<ByteSource>;
  /** A whole text file (a path in Node, a URL in the browser). */
  readTextFile(file: string): Promise<string>;
  /**
   * Writes `file` through a temporary file renamed into place, so that no partial file is ever seen (Node; the
   * browser has no file system and refuses).
   */
  writeFileAtomically(file: string, write: (append: (bytes: Uint8Array) => Promise<void>) => Promise<void>): Promise<void>;

  /**
   * The original Video-LLaVA checkpoint at `dir` (LlavaLlamaForCausalLM config, PyTorch .bin shards), loaded with its
   * LanguageBind towers as the original builder.py combines them; undefined where `dir` is not one. Node only: the
   * browser reads safetensors checkpoints (convert an original one with `video-llava convert`).
   */
  loadOriginalModel(dir: string, options: OriginalLoadOptions): Promise<VideoLlavaForConditionalGeneration | undefined>;

  /** Encoded image → RGB (Node: sharp with Pillow's conventions; browser: its own decoder). */
  decodeImage(input: EncodedImage, options: DecodeOptions): Promise<RawImage>;
  /** The sampled frames of a video as RGB (Node: ffmpeg; browser: WebCodecs), same frame numbers on both. */
  readVideoFrames(source: VideoSource, options: ReadVideoOptions): Promise<VideoFrames>;

  /** Memory the platform can give now, in bytes (Infinity where it cannot tell). */
  availableMemory(): number;
  /** The native addon (Node, where built); null elsewhere. */
  nativeAddon(): NativeAddon | null;
  /** Whether tf.matMul runs on native BLAS kernels (src/native) on this backend instead of the backend's own. */
  nativeKernelsActive(backend: string): boolean;
  /** Loads a backend's package so tfjs can select it (wasm binaries, tfjs-node, WebGPU). */
  loadBackend(name: BackendName): Promise<void>;
  /** After tf.setBackend: native matmul kernels in Node (option `native`); nothing in the browser. */
  configureBackend(name: BackendName, native?: boolean): void;
  /** Lets timers, I/O and rendering run between decoding steps. */
  yieldToEventLoop(): Promise<void>;
}
