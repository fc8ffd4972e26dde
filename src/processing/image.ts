/**
 * Image preprocessing with the numerics of the slow (Pillow) `VideoLlavaImageProcessor` of transformers 5.24
 * (spec section 4.3): decode to RGB, resize the shortest edge with Pillow's bicubic filter, center crop (zero
 * padding when the image is smaller), rescale by 1/255 in float64, normalize per channel in float32, CHW.
 *
 * Decoding uses sharp (libvips) and then reproduces what Pillow 13 + transformers do with the decoded pixels:
 * how a 16-bit PNG becomes 8-bit, how CMYK becomes RGB, and how transparency is removed. That last step depends
 * on how the Python processor is given the image, so it is an option (`DecodeConvention`):
 *
 *   'load_image' (default): the processor gets the file path (or a base64 / data: URL string). transformers'
 *     `load_image` applies `ImageOps.exif_transpose` and `convert("RGB")`, which DROPS an alpha channel (RGBA,
 *     LA, palette with several alpha levels) without compositing; only a single transparent colour (a PNG tRNS
 *     colour key, a palette with one fully transparent entry, a GIF transparent index) survives as
 *     `info["transparency"]`, and `convert_to_rgb` then turns every pixel of exactly that colour white.
 *   'pil_image': the processor gets `PIL.Image.open(path)` (the model card's example). No EXIF transpose;
 *     `convert_to_rgb` composites any alpha or transparency onto white with Pillow's `alpha_composite`.
 *
 * Both conventions agree on images without transparency and without an EXIF orientation tag.
 */

import * as fs from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs';
import { ConfigError, InputError, MediaError } from '../errors';
import { FieldReader, Json } from '../models/config_fields';
import { resizeBicubic, Window } from './resample';

/** A decoded image: RGB, interleaved (HWC), uint8. */
export interface RawImage {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 3;
}

export type ImageInput = string | Buffer | Uint8Array | RawImage;

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
export function loadImagePreprocessorConfig(dir: string): ImagePreprocessorConfig {
  const file = path.join(dir, 'preprocessor_config.json');
  if (!fs.existsSync(file)) return parseImagePreprocessorConfig({});
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ConfigError('preprocessor_config.json', `invalid JSON: ${(e as Error).message}`, file);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError('preprocessor_config.json', 'expected a JSON object', file);
  }
  return parseImagePreprocessorConfig(raw as Json, file);
}

// ------------------------------------------------------------------------------------------------ decode

/** How Pillow would mark transparency on the opened image. */
type Transparency =
  | { kind: 'none' }
  /** An alpha channel, or a palette with several alpha levels (`info["transparency"]` as bytes). */
  | { kind: 'alpha' }
  /**
   * One transparent colour (`info["transparency"]` as a number or tuple). For a palette image (PNG "P", GIF)
   * Pillow's own RGBA conversion makes only the transparent index transparent (the decoder's alpha says which
   * pixels those are), but after load_image's `convert("RGB")` every pixel of the index's colour `key` is keyed.
   * For grayscale / RGB images `key` holds the raw tRNS values, compared with the 8-bit pixels as Pillow does
   * (`key16` with the 16-bit values of a 16-bit grayscale PNG, whose key `convert("RGB")` drops: pil_image only).
   */
  | { kind: 'key'; palette: boolean; key: [number, number, number] | null; key16?: number };

interface SourceModel {
  transparency: Transparency;
  /** 16-bit PNG: grayscale is clipped to 255 (Pillow "I;16" -> RGB), colour keeps the high byte. */
  depth16: 'clip' | 'high-byte' | null;
  cmyk: boolean;
}

interface PngHeader {
  bitDepth: number;
  colorType: number;
  palette: Uint8Array | null;
  trns: Uint8Array | null;
}

/** IHDR, PLTE and tRNS of a PNG (all precede the first IDAT), or null when the chunks cannot be walked. */
function readPngHeader(bytes: Uint8Array): PngHeader | null {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 8;
  let header: PngHeader | null = null;
  while (pos + 8 <= bytes.length) {
    const len = view.getUint32(pos);
    const type = String.fromCharCode(bytes[pos + 4], bytes[pos + 5], bytes[pos + 6], bytes[pos + 7]);
    const start = pos + 8;
    if (start + len > bytes.length) return null;
    const body = bytes.subarray(start, start + len);
    if (type === 'IHDR') {
      if (len < 13) return null;
      header = { bitDepth: body[8], colorType: body[9], palette: null, trns: null };
    } else if (!header) {
      return null;
    } else if (type === 'PLTE') {
      header.palette = body;
    } else if (type === 'tRNS') {
      header.trns = body;
    } else if (type === 'IDAT' || type === 'IEND') {
      break;
    }
    pos = start + len + 4;
  }
  return header;
}

/** The first frame's transparent index and its palette colour, as Pillow's GIF reader sees them. */
function readGifTransparency(bytes: Uint8Array): [number, number, number] | null {
  if (bytes.length < 13) return null;
  let pos = 13;
  const flags = bytes[10];
  let palette: Uint8Array | null = null;
  if (flags & 0x80) {
    const size = 3 << ((flags & 7) + 1);
    palette = bytes.subarray(pos, pos + size);
    pos += size;
  }
  let transparent: number | null = null;
  while (pos < bytes.length) {
    const block = bytes[pos];
    if (block === 0x21) {
      const label = bytes[pos + 1];
      pos += 2;
      if (label === 0xf9 && bytes[pos] >= 4) {
        transparent = bytes[pos + 1] & 1 ? bytes[pos + 4] : null;
      }
      while (pos < bytes.length && bytes[pos] !== 0) pos += bytes[pos] + 1; // sub-blocks
      pos += 1;
    } else if (block === 0x2c) {
      const packed = bytes[pos + 9];
      if (packed & 0x80) palette = bytes.subarray(pos + 10, pos + 10 + (3 << ((packed & 7) + 1)));
      break;
    } else {
      break;
    }
  }
  if (transparent === null || !palette || transparent * 3 + 3 > palette.length) return null;
  return [palette[transparent * 3], palette[transparent * 3 + 1], palette[transparent * 3 + 2]];
}

function pngSourceModel(h: PngHeader): SourceModel {
  const depth16 = h.bitDepth === 16 ? (h.colorType === 0 ? 'clip' : 'high-byte') : null;
  const base = { depth16, cmyk: false } as const;
  if (h.colorType === 4 || h.colorType === 6) return { ...base, transparency: { kind: 'alpha' } };
  if (!h.trns) return { ...base, transparency: { kind: 'none' } };
  const t = h.trns;
  if (h.colorType === 3) {
    // one entry 0x00 and every other 0xff: a single transparent index; otherwise per-entry alpha levels
    const zeros = t.reduce((n, v) => n + (v === 0 ? 1 : 0), 0);
    const simple = zeros === 1 && t.every((v) => v === 0 || v === 255);
    if (!simple) return { ...base, transparency: { kind: 'alpha' } };
    const i = t.indexOf(0);
    const p = h.palette;
    const key: [number, number, number] | null =
      p && i * 3 + 3 <= p.length ? [p[i * 3], p[i * 3 + 1], p[i * 3 + 2]] : null;
    return { ...base, transparency: { kind: 'key', palette: true, key } };
  }
  if (t.length < (h.colorType === 2 ? 6 : 2)) return { ...base, transparency: { kind: 'none' } };
  const u16 = (o: number) => (t[o] << 8) | t[o + 1];
  if (h.colorType === 0) {
    if (h.bitDepth === 1) {
      const v = u16(0) ? 255 : 0;
      return { ...base, transparency: { kind: 'key', palette: false, key: [v, v, v] } };
    }
    if (h.bitDepth === 16) return { ...base, transparency: { kind: 'key', palette: false, key: null, key16: u16(0) } };
    const v = u16(0);
    return { ...base, transparency: { kind: 'key', palette: false, key: [v, v, v] } };
  }
  return { ...base, transparency: { kind: 'key', palette: false, key: [u16(0), u16(2), u16(4)] } };
}

function describe(input: ImageInput): string {
  if (typeof input === 'string') return input.startsWith('data:') ? 'data URL' : input;
  return isRawImage(input) ? `raw image ${input.width}x${input.height}` : `image buffer (${input.length} bytes)`;
}

function isRawImage(input: unknown): input is RawImage {
  return typeof input === 'object' && input !== null && !(input instanceof Uint8Array) && 'data' in input;
}

function validateRawImage(img: RawImage, source: string): RawImage {
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

async function readInputBytes(input: string | Uint8Array, source: string): Promise<Uint8Array> {
  if (typeof input !== 'string') return input;
  if (input.startsWith('data:')) {
    const comma = input.indexOf(',');
    if (!input.startsWith('data:image/') || comma < 0 || !input.slice(0, comma).endsWith(';base64')) {
      throw new MediaError(source, 'expected a base64 data URL (data:image/...;base64,...)');
    }
    return Buffer.from(input.slice(comma + 1), 'base64');
  }
  if (/^https?:\/\//.test(input)) {
    throw new MediaError(source, 'URLs are not fetched; download the image and pass its path or bytes');
  }
  try {
    return await fs.promises.readFile(input);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new MediaError(source, 'file not found');
    if (code === 'EISDIR') throw new MediaError(source, 'is a directory, not an image file');
    throw new MediaError(source, `cannot read file: ${(e as Error).message}`);
  }
}

/** Pillow's alpha_composite of (v, a) over opaque white, for 8-bit values (exact integer formula). */
function compositeOnWhite(v: number, a: number): number {
  const t = v * a * 128 + 255 * (255 - a) * 128 + (0x80 << 7);
  return (((t >> 8) + t) >> 8) >> 7;
}

/** Pillow's CMYK -> RGB for one channel value c with black k. */
function cmykToRgb(c: number, k: number): number {
  const nk = 255 - k;
  const t = c * nk + 128;
  return nk - (((t >> 8) + t) >> 8);
}

interface Decoded {
  /** 8-bit values of every channel, interleaved. */
  data: Uint8Array;
  /** 16-bit grayscale values before clipping (for a 16-bit colour key). */
  raw16: Uint16Array | null;
  width: number;
  height: number;
  channels: number;
}

/**
 * Pillow refuses images above 2 * Image.MAX_IMAGE_PIXELS (DecompressionBombError); so do we, before decoding.
 * ICC profiles are ignored (Pillow does not apply them); only the first frame of an animation is read.
 */
const MAX_INPUT_PIXELS = 2 * 89478485;
const SHARP_OPTIONS = { ignoreIcc: true, failOn: 'truncated', limitInputPixels: MAX_INPUT_PIXELS } as const;

async function decodePixels(bytes: Uint8Array, model: SourceModel, autoOrient: boolean): Promise<Decoded> {
  const open = () => sharp(bytes, { ...SHARP_OPTIONS, autoOrient, pages: 1, page: 0 });
  if (model.cmyk) {
    const { data, info } = await open()
      .pipelineColourspace('cmyk')
      .toColourspace('cmyk')
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 4) throw new Error(`expected 4 CMYK channels, decoder gave ${info.channels}`);
    const out = new Uint8Array(info.width * info.height * 3);
    for (let i = 0, o = 0; o < out.length; i += 4, o += 3) {
      const k = data[i + 3];
      out[o] = cmykToRgb(data[i], k);
      out[o + 1] = cmykToRgb(data[i + 1], k);
      out[o + 2] = cmykToRgb(data[i + 2], k);
    }
    return { data: out, raw16: null, width: info.width, height: info.height, channels: 3 };
  }
  if (model.depth16) {
    const grey = model.depth16 === 'clip';
    const { data, info } = await open()
      .toColourspace(grey ? 'grey16' : 'rgb16')
      .raw({ depth: 'ushort' })
      .toBuffer({ resolveWithObject: true });
    const bytes16 = data.byteOffset % 2 === 0 ? data : new Uint8Array(data); // Uint16Array needs 2-byte alignment
    const u16 = new Uint16Array(bytes16.buffer, bytes16.byteOffset, bytes16.length / 2);
    const out = new Uint8Array(u16.length);
    for (let i = 0; i < u16.length; i++) out[i] = grey ? Math.min(u16[i], 255) : u16[i] >> 8;
    return { data: out, raw16: grey ? u16 : null, width: info.width, height: info.height, channels: info.channels };
  }
  const { data, info } = await open().raw().toBuffer({ resolveWithObject: true });
  return {
    data: new Uint8Array(data.buffer, data.byteOffset, data.length),
    raw16: null,
    width: info.width,
    height: info.height,
    channels: info.channels,
  };
}

/** Decoded pixels (1-4 channels) -> RGB, removing transparency the way the chosen convention does. */
function toRgb(d: Decoded, t: Transparency, convention: DecodeConvention, convertRgb: boolean): Uint8Array {
  const n = d.width * d.height;
  const out = new Uint8Array(n * 3);
  const ch = d.channels;
  const hasAlphaChannel = ch === 2 || ch === 4;
  const composite = convertRgb && t.kind !== 'none' && (convention === 'pil_image' || t.kind === 'key');
  for (let i = 0; i < n; i++) {
    const s = i * ch;
    let r: number, g: number, b: number;
    if (ch <= 2) r = g = b = d.data[s];
    else {
      r = d.data[s];
      g = d.data[s + 1];
      b = d.data[s + 2];
    }
    if (composite) {
      let a = hasAlphaChannel ? d.data[s + ch - 1] : 255;
      if (t.kind === 'key' && !(t.palette && convention === 'pil_image')) {
        // a colour key is all-or-nothing: matching pixels become transparent, all others opaque
        const keyed =
          (t.key !== null && r === t.key[0] && g === t.key[1] && b === t.key[2]) ||
          (t.key16 !== undefined && convention === 'pil_image' && d.raw16 !== null && d.raw16[i * ch] === t.key16) ||
          (t.palette && a === 0);
        a = keyed ? 0 : 255;
      }
      if (a !== 255) {
        r = compositeOnWhite(r, a);
        g = compositeOnWhite(g, a);
        b = compositeOnWhite(b, a);
      }
    }
    out[i * 3] = r;
    out[i * 3 + 1] = g;
    out[i * 3 + 2] = b;
  }
  return out;
}

/**
 * Decodes a file path, a data URL, encoded bytes (JPEG, PNG, WebP, GIF first frame, and whatever else sharp
 * reads) or a raw RGB image into RGB uint8 HWC, as the Python processor would see it (see the file comment).
 * Throws MediaError naming the source for a missing file, undecodable data or a zero-size image.
 */
export async function decodeImage(input: ImageInput, options: DecodeOptions = {}): Promise<RawImage> {
  const source = describe(input);
  if (isRawImage(input)) return validateRawImage(input, source);
  if (typeof input !== 'string' && !(input instanceof Uint8Array)) {
    throw new InputError('image', `expected a path, a data URL, bytes or a RawImage, found ${typeof input}`);
  }
  const convention = options.convention ?? 'load_image';
  const convertRgb = options.convertRgb ?? true;
  const bytes = await readInputBytes(input, source);
  if (bytes.length === 0) throw new MediaError(source, 'empty file or buffer: not an image');

  let meta: import('sharp').Metadata;
  try {
    meta = await sharp(bytes, SHARP_OPTIONS).metadata();
  } catch (e) {
    throw new MediaError(source, `not a decodable image (${(e as Error).message})`);
  }
  if (!meta.width || !meta.height) throw new MediaError(source, `zero-size image (${meta.width}x${meta.height})`);
  if (meta.width * meta.height > MAX_INPUT_PIXELS) {
    throw new MediaError(
      source,
      `${meta.width}x${meta.height} exceeds ${MAX_INPUT_PIXELS} pixels (Pillow's decompression-bomb limit)`,
    );
  }

  let model: SourceModel = {
    transparency: { kind: meta.hasAlpha ? 'alpha' : 'none' },
    depth16: null,
    cmyk: meta.space === 'cmyk',
  };
  if (meta.format === 'png') {
    const header = readPngHeader(bytes);
    if (header) model = pngSourceModel(header);
  } else if (meta.format === 'gif') {
    const key = readGifTransparency(bytes);
    model.transparency = key ? { kind: 'key', palette: true, key } : { kind: 'none' };
  }
  if (!convertRgb && convention === 'pil_image' && (model.transparency.kind !== 'none' || meta.channels !== 3)) {
    throw new InputError(
      'do_convert_rgb',
      `${source}: with do_convert_rgb=false the Python processor keeps a PIL image's own mode (not RGB here); ` +
        'only RGB images are supported that way',
    );
  }

  let decoded: Decoded;
  try {
    decoded = await decodePixels(bytes, model, convention === 'load_image');
  } catch (e) {
    throw new MediaError(source, `cannot decode the image data (${(e as Error).message})`);
  }
  if (decoded.width === 0 || decoded.height === 0) {
    throw new MediaError(source, `zero-size image (${decoded.width}x${decoded.height})`);
  }
  const data = toRgb(decoded, model.transparency, convention, convertRgb);
  return { data, width: decoded.width, height: decoded.height, channels: 3 };
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
        `${describe(input)} gives ${shape[0]}x${shape[1]} pixel values but the first image gives ${hw[0]}x${hw[1]}; ` +
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
