/**
 * Image decoding in Node: sharp (libvips) decodes, then what Pillow 13 + transformers do with the decoded pixels is
 * reproduced: how a 16-bit PNG becomes 8-bit, how CMYK becomes RGB, and how transparency is removed. That last step
 * depends on how the Python processor is given the image, so it is an option (`DecodeConvention`):
 *
 *   'load_image' (default): the processor gets the file path (or a base64 / data: URL string). transformers'
 *     `load_image` applies `ImageOps.exif_transpose` and `convert("RGB")`, which DROPS an alpha channel (RGBA,
 *     LA, palette with several alpha levels) without compositing; only a single transparent colour (a PNG tRNS
 *     colour key, a palette with one fully transparent entry, a GIF transparent index) survives as
 *     `info["transparency"]`, and `convert_to_rgb` then turns every pixel of exactly that colour white.
 *   'pil_image': the processor gets `PIL.Image.open(path)` (the model card's example). No EXIF transpose;
 *     `convert_to_rgb` composites any alpha or transparency onto white with Pillow's `alpha_composite`.
 *
 * Both conventions agree on images without transparency and without an EXIF orientation tag. Reached through
 * src/platform (Node); the page decodes with the browser instead (src/platform/browser_media.ts).
 */
import * as fs from 'fs';
import sharp from 'sharp';
import { InputError, MediaError } from '../errors';
import { DecodeConvention, DecodeOptions, EncodedImage, MAX_INPUT_PIXELS, RawImage, describeImage } from './image';

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
 * Decodes a file path, a data URL or encoded bytes (JPEG, PNG, WebP, GIF first frame, and whatever else sharp
 * reads) into RGB uint8 HWC, as the Python processor would see it (see the file comment). Throws MediaError naming
 * the source for a missing file, undecodable data or a zero-size image.
 */
export async function decodeImageWithSharp(input: EncodedImage, options: DecodeOptions = {}): Promise<RawImage> {
  const source = describeImage(input);
  const convention = options.convention ?? 'load_image';
  const convertRgb = options.convertRgb ?? true;
  const bytes = await readInputBytes(input instanceof Blob ? new Uint8Array(await input.arrayBuffer()) : input, source);
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
