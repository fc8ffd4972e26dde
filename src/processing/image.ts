/**
 * Image preprocessing with the numerics of the slow (Pillow) `VideoLlavaImageProcessor` of transformers 5.24
 * (spec section 4.3): decode to RGB, resize the shortest edge with Pillow's bicubic filter, center crop (zero
 * padding when the image is smaller), rescale by 1/255 in float64, normalize per channel in float32, CHW.
 *
 * Decoding is the platform's (src/platform): in Node sharp plus Pillow's conventions for 16-bit, CMYK and
 * transparency (./image_decode.ts); in the page the browser's own decoder. Everything after decoding is this file's,
 * the same code in both, so the same RGB gives the same pixel values.
 */

import * as tf from '@tensorflow/tfjs';
import { ConfigError, InputError, MediaError } from '../errors';
import { FieldReader, Json } from '../models/config_fields';
import { ModelFiles } from '../platform/files';
import { platform } from '../platform';
import { resizeBicubic, Window } from './resample';

/** A decoded image: RGB, interleaved (HWC), uint8. */
export interface RawImage {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 3;
}

/** Encoded image data: a file path (Node) or URL (browser), a data URL, the file's bytes, or a Blob (a page's File). */
export type EncodedImage = string | Uint8Array | Blob;

export type ImageInput = EncodedImage | RawImage;

export type DecodeConvention = 'load_image' | 'pil_image';

export interface DecodeOptions {
  /** Which Python entry point to reproduce (see the file comment). Default 'load_image'. */
  convention?: DecodeConvention;
  /** `do_convert_rgb` of the processor: false skips the transparency-to-white step. Default true. */
  convertRgb?: boolean;
}

// ------------------------------------------------------------------------------------------------ config

/** `size` of the processor: resize the shortest edge, or to an exact height and width. */
export type ResizeSize = { shortest_edge: number } | { height: number; width: number };

/** preprocessor_config.json of VideoLlavaImageProcessor; defaults are the Python class defaults (OpenAI CLIP). */
export interface ImagePreprocessorConfig {
  do_resize: boolean; // true
  size: ResizeSize; // {shortest_edge: 224}; an int means {shortest_edge: n}, [h, w] means {height, width}
  resample: 3; // 3 = PIL BICUBIC, the only filter implemented
  do_center_crop: boolean; // true
  crop_size: { height: number; width: number }; // {height: 224, width: 224}; an int means a square
  do_rescale: boolean; // true
  rescale_factor: number; // 1/255
  do_normalize: boolean; // true
  image_mean: [number, number, number]; // OPENAI_CLIP_MEAN; a single number applies to every channel
  image_std: [number, number, number]; // OPENAI_CLIP_STD
  do_convert_rgb: boolean; // true
}

export const IMAGE_PREPROCESSOR_DEFAULTS: ImagePreprocessorConfig = {
  do_resize: true,
  size: { shortest_edge: 224 },
  resample: 3,
  do_center_crop: true,
  crop_size: { height: 224, width: 224 },
  do_rescale: true,
  rescale_factor: 1 / 255,
  do_normalize: true,
  image_mean: [0.48145466, 0.4578275, 0.40821073],
  image_std: [0.26862954, 0.26130258, 0.27577711],
  do_convert_rgb: true,
};

function positiveInt(value: unknown, field: string, file?: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new ConfigError(field, `expected a positive integer, found ${JSON.stringify(value)}`, file);
  }
  return value;
}

/** get_size_dict(size, default_to_square=False), restricted to what the processor's resize accepts. */
function parseSize(raw: unknown, file?: string): ResizeSize {
  if (raw === undefined || raw === null) return { ...(IMAGE_PREPROCESSOR_DEFAULTS.size as { shortest_edge: number }) };
  if (typeof raw === 'number') return { shortest_edge: positiveInt(raw, 'size', file) };
  if (Array.isArray(raw) && raw.length === 2) {
    return { height: positiveInt(raw[0], 'size[0]', file), width: positiveInt(raw[1], 'size[1]', file) };
  }
  if (typeof raw === 'object' && !Array.isArray(raw)) {
    const o = raw as Json;
    const keys = Object.keys(o).sort().join(',');
    if (keys === 'shortest_edge' || keys === 'longest_edge,shortest_edge') {
      // the processor resizes with shortest_edge alone; longest_edge is never passed on as max_size
      return { shortest_edge: positiveInt(o.shortest_edge, 'size.shortest_edge', file) };
    }
    if (keys === 'height,width') {
      return { height: positiveInt(o.height, 'size.height', file), width: positiveInt(o.width, 'size.width', file) };
    }
  }
  throw new ConfigError(
    'size',
    `expected {"shortest_edge": n} or {"height": h, "width": w} (or an int), found ${JSON.stringify(raw)}`,
    file,
  );
}

/** get_size_dict(crop_size, default_to_square=True); center_crop needs height and width. */
function parseCropSize(raw: unknown, file?: string): { height: number; width: number } {
  if (raw === undefined || raw === null) return { ...IMAGE_PREPROCESSOR_DEFAULTS.crop_size };
  if (typeof raw === 'number') {
    const n = positiveInt(raw, 'crop_size', file);
    return { height: n, width: n };
  }
  if (Array.isArray(raw) && raw.length === 2) {
    return { height: positiveInt(raw[0], 'crop_size[0]', file), width: positiveInt(raw[1], 'crop_size[1]', file) };
  }
  if (typeof raw === 'object' && !Array.isArray(raw) && Object.keys(raw).sort().join(',') === 'height,width') {
    const o = raw as Json;
    return {
      height: positiveInt(o.height, 'crop_size.height', file),
      width: positiveInt(o.width, 'crop_size.width', file),
    };
  }
  throw new ConfigError(
    'crop_size',
    `expected {"height": h, "width": w} or an int, found ${JSON.stringify(raw)}`,
    file,
  );
}

/** image_mean / image_std: a number (every channel) or a list of three numbers. */
function parseChannelTriple(raw: unknown, field: string, fallback: [number, number, number], file?: string) {
  if (raw === undefined || raw === null) return [...fallback] as [number, number, number];
  if (typeof raw === 'number' && Number.isFinite(raw)) return [raw, raw, raw] as [number, number, number];
  if (Array.isArray(raw) && raw.length === 3 && raw.every((v) => typeof v === 'number' && Number.isFinite(v))) {
    return [...raw] as [number, number, number];
  }
  throw new ConfigError(field, `expected a number or a list of 3 numbers, found ${JSON.stringify(raw)}`, file);
}

/** Fills an ImagePreprocessorConfig from parsed preprocessor_config.json; unknown keys are ignored. */
export function parseImagePreprocessorConfig(raw: Json, file?: string): ImagePreprocessorConfig {
  const f = new FieldReader(raw, '', file);
  const d = IMAGE_PREPROCESSOR_DEFAULTS;
  const resample = f.int('resample', d.resample);
  if (resample !== 3) {
    throw new ConfigError('resample', `only 3 (PIL BICUBIC) is implemented, found ${resample}`, file);
  }
  const cfg: ImagePreprocessorConfig = {
    do_resize: f.bool('do_resize', d.do_resize),
    size: parseSize(raw.size, file),
    resample: 3,
    do_center_crop: f.bool('do_center_crop', d.do_center_crop),
    crop_size: parseCropSize(raw.crop_size, file),
    do_rescale: f.bool('do_rescale', d.do_rescale),
    rescale_factor: f.num('rescale_factor', d.rescale_factor),
    do_normalize: f.bool('do_normalize', d.do_normalize),
    image_mean: parseChannelTriple(raw.image_mean, 'image_mean', d.image_mean, file),
    image_std: parseChannelTriple(raw.image_std, 'image_std', d.image_std, file),
    do_convert_rgb: f.bool('do_convert_rgb', d.do_convert_rgb),
  };
  return cfg;
}

/** Reads `<dir>/preprocessor_config.json`; a missing file gives the defaults (those of the checkpoint). */
export function loadImagePreprocessorConfig(dir: string | ModelFiles): ImagePreprocessorConfig {
  const files = typeof dir === 'string' ? platform.localFiles(dir) : dir;
  const file = files.where('preprocessor_config.json');
  let raw: unknown;
  try {
    const text = files.text('preprocessor_config.json');
    if (text === undefined) return parseImagePreprocessorConfig({});
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError('preprocessor_config.json', `invalid JSON: ${(e as Error).message}`, file);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError('preprocessor_config.json', 'expected a JSON object', file);
  }
  return parseImagePreprocessorConfig(raw as Json, file);
}

// ------------------------------------------------------------------------------------------------ decode

/** An image input as messages name it. */
export function describeImage(input: ImageInput): string {
  if (typeof input === 'string') return input.startsWith('data:') ? 'data URL' : input;
  if (isRawImage(input)) return `raw image ${input.width}x${input.height}`;
  if (input instanceof Uint8Array) return `image buffer (${input.length} bytes)`;
  const name = (input as { name?: unknown }).name;
  return typeof name === 'string' && name !== '' ? name : `image blob (${input.size} bytes)`;
}

function isRawImage(input: unknown): input is RawImage {
  return typeof input === 'object' && input !== null && !(input instanceof Uint8Array) && 'data' in input;
}

export function validateRawImage(img: RawImage, source: string): RawImage {
  const { width, height, channels, data } = img;
  if (!(data instanceof Uint8Array)) throw new InputError(source, 'expected data to be a Uint8Array (RGB, HWC)');
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 0 || height < 0) {
    throw new InputError(source, `expected integer width and height, found ${width}x${height}`);
  }
  if (width === 0 || height === 0) throw new MediaError(source, `zero-size image (${width}x${height})`);
  if (channels !== 3) throw new InputError(source, `expected 3 channels (RGB), found ${channels}`);
  if (data.length !== width * height * 3) {
    throw new InputError(source, `expected ${width}x${height}x3 = ${width * height * 3} bytes, found ${data.length}`);
  }
  return img;
}

/**
 * Pillow refuses images above 2 * Image.MAX_IMAGE_PIXELS (DecompressionBombError); so do the decoders, before
 * decoding.
 */
export const MAX_INPUT_PIXELS = 2 * 89478485;

/**
 * Decodes a file path (Node) or URL (browser), a data URL, encoded bytes or a Blob (JPEG, PNG, WebP, GIF first
 * frame...) into RGB uint8 HWC, as the Python processor would see it; a RawImage is checked and returned. Throws
 * MediaError naming the source for a missing file, undecodable data or a zero-size image.
 */
export async function decodeImage(input: ImageInput, options: DecodeOptions = {}): Promise<RawImage> {
  const source = describeImage(input);
  if (isRawImage(input)) return validateRawImage(input, source);
  if (typeof input !== 'string' && !(input instanceof Uint8Array) && !(typeof Blob !== 'undefined' && input instanceof Blob)) {
    throw new InputError('image', `expected a path, a data URL, bytes, a Blob or a RawImage, found ${typeof input}`);
  }
  return platform.decodeImage(input, options);
}

// ------------------------------------------------------------------------------------------------ preprocess

/** Largest output (pixels per image) that preprocessImage will build, to keep hostile sizes from eating memory. */
export const MAX_OUTPUT_PIXELS = 1 << 24;

/**
 * The (width, height) the processor resizes to: get_resize_output_image_size(default_to_square=False) for
 * shortest_edge, which keeps the short side at `shortest_edge` and sets the long side to
 * int(shortest_edge * long / short) (true division, then truncation); or the exact size.
 */
export function resizeOutputSize(width: number, height: number, size: ResizeSize): { width: number; height: number } {
  if ('height' in size) return { width: size.width, height: size.height };
  const s = size.shortest_edge;
  if (width <= height) return { width: s, height: Math.trunc((s * height) / width) };
  return { width: Math.trunc((s * width) / height), height: s };
}

/** The resized uint8 image the processor computes before cropping (the whole image; may be large). */
export function resizeImage(img: RawImage, cfg: ImagePreprocessorConfig): RawImage {
  validateRawImage(img, 'image');
  if (!cfg.do_resize) return img;
  const { width, height } = resizeOutputSize(img.width, img.height, cfg.size);
  if (width * height > MAX_OUTPUT_PIXELS) {
    throw new InputError('image', `resized size ${width}x${height} exceeds ${MAX_OUTPUT_PIXELS} pixels`);
  }
  return { data: resizeBicubic(img, width, height), width, height, channels: 3 };
}

/**
 * One image -> pixel_values [3, H, W] float32 (H, W = crop_size, or the resized size without center crop),
 * bit-identical to the slow Python processor given the same RGB array. Only the cropped part of the resized
 * image is computed (each Pillow output pixel depends only on its own filter taps).
 */
export function preprocessImage(img: RawImage, cfg: ImagePreprocessorConfig): Float32Array {
  validateRawImage(img, 'image');
  const resized = cfg.do_resize ? resizeOutputSize(img.width, img.height, cfg.size) : img;
  const rw = resized.width;
  const rh = resized.height;
  // center_crop: top = (h - ch) // 2 (floor); a crop larger than the image is zero-padded, which leaves
  // output row y showing image row y + top whenever that row exists (the ceil'd pad offset cancels out).
  const outH = cfg.do_center_crop ? cfg.crop_size.height : rh;
  const outW = cfg.do_center_crop ? cfg.crop_size.width : rw;
  const top = cfg.do_center_crop ? Math.floor((rh - outH) / 2) : 0;
  const left = cfg.do_center_crop ? Math.floor((rw - outW) / 2) : 0;
  if (outW * outH > MAX_OUTPUT_PIXELS) {
    throw new InputError('image', `output size ${outW}x${outH} exceeds ${MAX_OUTPUT_PIXELS} pixels`);
  }
  const y0 = Math.max(0, top);
  const y1 = Math.min(rh, top + outH);
  const x0 = Math.max(0, left);
  const x1 = Math.min(rw, left + outW);
  const win: Window = { left: x0, top: y0, width: x1 - x0, height: y1 - y0 };
  const pixels = resizeBicubic(img, rw, rh, win); // [win.height, win.width, 3]

  // Per channel, the value of every uint8 level (rescale in float64 then float32; normalize in float32).
  const lut = new Float32Array(3 * 256);
  for (let c = 0; c < 3; c++) {
    const mean = Math.fround(cfg.image_mean[c]);
    const std = Math.fround(cfg.image_std[c]);
    for (let v = 0; v < 256; v++) {
      let x = cfg.do_rescale ? Math.fround(v * cfg.rescale_factor) : v;
      if (cfg.do_normalize) x = Math.fround(Math.fround(x - mean) / std);
      lut[c * 256 + v] = x;
    }
  }
  const plane = outH * outW;
  const out = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) out.fill(lut[c * 256], c * plane, (c + 1) * plane); // padding = pixel value 0
  for (let y = 0; y < win.height; y++) {
    const oy = y + y0 - top;
    for (let x = 0; x < win.width; x++) {
      const o = oy * outW + (x + x0 - left);
      const s = (y * win.width + x) * 3;
      out[o] = lut[pixels[s]];
      out[plane + o] = lut[256 + pixels[s + 1]];
      out[2 * plane + o] = lut[512 + pixels[s + 2]];
    }
  }
  return out;
}

export interface PixelValues {
  /** [N, 3, H, W] row-major. */
  pixelValues: Float32Array;
  shape: [number, number, number, number];
}

/** Decodes and preprocesses images one at a time into one [N, 3, H, W] batch. */
export async function preprocessImages(
  inputs: ImageInput | ImageInput[],
  cfg: ImagePreprocessorConfig,
  options: Omit<DecodeOptions, 'convertRgb'> = {},
): Promise<PixelValues> {
  const list = Array.isArray(inputs) ? inputs : [inputs];
  if (list.length === 0) throw new InputError('images', 'expected at least one image');
  const outputs: Float32Array[] = [];
  let hw: [number, number] | null = null;
  for (const input of list) {
    const img = await decodeImage(input, { ...options, convertRgb: cfg.do_convert_rgb });
    const shape: [number, number] = cfg.do_center_crop
      ? [cfg.crop_size.height, cfg.crop_size.width]
      : (() => {
          const r = cfg.do_resize ? resizeOutputSize(img.width, img.height, cfg.size) : img;
          return [r.height, r.width] as [number, number];
        })();
    if (hw && (hw[0] !== shape[0] || hw[1] !== shape[1])) {
      throw new InputError(
        'images',
        `${describeImage(input)} gives ${shape[0]}x${shape[1]} pixel values but the first image gives ${hw[0]}x${hw[1]}; ` +
          'images of one batch must share a size (enable do_center_crop)',
      );
    }
    hw = shape;
    outputs.push(preprocessImage(img, cfg));
  }
  const [h, w] = hw!;
  const pixelValues = new Float32Array(list.length * 3 * h * w);
  outputs.forEach((o, i) => pixelValues.set(o, i * o.length));
  return { pixelValues, shape: [list.length, 3, h, w] };
}

/** pixel_values as a tf.Tensor4D [N, 3, H, W] float32 (the caller owns and disposes it). */
export function pixelValuesTensor(p: PixelValues): tf.Tensor4D {
  return tf.tensor4d(p.pixelValues, p.shape, 'float32');
}
