/**
 * High-bit-depth 4:2:0 video (10-bit H.264 High 10, HEVC Main 10, 12-bit …) to RGB24 exactly as PyAV's
 * `frame.to_ndarray(format="rgb24")` makes it, which is what transformers' video loading calls.
 *
 * PyAV 18 converts with its bundled FFmpeg 8 libswscale (SWS_BILINEAR, the frame's colour tags), and for
 * these formats swscale takes its general scaling path, not the 8-bit special-case converter. The ffmpeg
 * binary used here is older and converts such frames differently (by up to 99 levels): its swscale ignores
 * the frame's chroma siting. So ffmpeg only decodes (exact: decoders are bit-exact) and hands over the
 * planes, and the conversion below reproduces FFmpeg 8's arithmetic:
 *
 *   1. luma and chroma are widened to 15 bits: v << (15 − bits); chroma is resampled horizontally to the
 *      half-width grid the packed-RGB writer uses, bilinear with 14-bit weights, from the source chroma
 *      position (H.264 and HEVC: "left", i.e. co-sited with even luma columns) to the grid's centre; the
 *      sum is shifted right by bits − 1 (truncating);
 *   2. each output row takes chroma bilinearly from the two nearest chroma rows (12-bit weights, source
 *      rows centred between luma row pairs), edges clamped; then luma and chroma are rounded to 8 bits
 *      ((x · 4096 + 2^18) >> 19);
 *   3. 8-bit YUV → RGB through swscale's lookup tables (built from its fixed-point matrix coefficients,
 *      limited or full range), chroma clamped to 0…255, luma not (its table has headroom).
 *
 * Frames equal PyAV's exactly (max difference 0) on the 10-bit H.264 and HEVC fixtures
 * (reference/gen_videos.py), and on synthetic frames for every matrix and both ranges. 4:2:2 and 4:4:4
 * high-bit-depth formats take other swscale paths that are not reproduced here (readVideoFrames leaves them
 * to ffmpeg's own conversion, which is not verified against PyAV).
 */
import { MediaError } from '../errors';
import { SWSCALE_MATRICES as MATRICES } from './yuv';

type Matrix = keyof typeof MATRICES;

/** ffmpeg's colour-space names → matrix; anything else (unknown, unspecified) is swscale's default, BT.601. */
const SPACE_NAMES: Record<string, Matrix> = {
  bt709: 'bt709',
  fcc: 'fcc',
  bt470bg: 'bt601',
  smpte170m: 'bt601',
  smpte240m: 'smpte240m',
  bt2020nc: 'bt2020',
  bt2020c: 'bt2020',
};

/** Chroma sample positions in 1/256 of a luma sample (FFmpeg's av_chroma_location_enum_to_pos). */
const CHROMA_POSITIONS: Record<string, [number, number]> = {
  left: [0, 128],
  center: [128, 128],
  topleft: [0, 0],
  top: [128, 0],
  bottomleft: [0, 256],
  bottom: [128, 256],
};

/** Codecs whose FFmpeg 8 decoders tag 4:2:0 frames "left" when the stream does not say (checked: h264, hevc). */
const LEFT_SITED = new Set(['h264', 'hevc']);

export interface HighDepthFormat {
  /** The ffmpeg pixel format to ask for (little-endian, same depth): yuv420p10le, … */
  pixFmt: string;
  bits: number;
  fullRange: boolean;
  matrix: Matrix;
  /** Chroma position [x, y] in 1/256 luma samples. */
  chroma: [number, number];
}

/**
 * From the `Stream #0:n: Video: …` line ffmpeg prints, the format when it is 4:2:0 with 9 to 14 bits
 * (what yuv420HighDepthToRgb handles); undefined otherwise.
 */
export function highDepthFormat(streamLine: string): HighDepthFormat | undefined {
  const codec = /Video: (\w+)/.exec(streamLine)?.[1] ?? '';
  const m = /, yuv420p(9|10|12|14)(?:le|be)(?:\(([^)]*)\))?(?=[,\s]|$)/.exec(streamLine);
  if (!m) return undefined;
  const [, depth, details] = m;
  const tags = (details ?? '').split(',').map((t) => t.trim());
  const space = tags.map((t) => t.split('/')[0]).find((t) => t in SPACE_NAMES);
  const location = tags.find((t) => t in CHROMA_POSITIONS);
  return {
    pixFmt: `yuv420p${depth}le`,
    bits: Number(depth),
    fullRange: tags.includes('pc') || tags.includes('jpeg'),
    matrix: space ? SPACE_NAMES[space] : 'bt601',
    chroma: CHROMA_POSITIONS[location ?? (LEFT_SITED.has(codec) ? 'left' : 'center')],
  };
}

/** C integer division (truncates toward zero), as swscale's table setup computes. */
const cdiv = (a: number, b: number) => Math.trunc(a / b);

interface Tables {
  /** Clamped 8-bit output by table index. */
  y: Uint8Array;
  /** Offsets into `y` per 8-bit chroma value: base + chroma term (R from V, G from U and V, B from U). */
  rV: Int32Array;
  gU: Int32Array;
  gV: Int32Array;
  bU: Int32Array;
}

const tableCache = new Map<string, Tables>();

/** swscale's 24-bit yuv2rgb tables for a matrix and range (default brightness, contrast, saturation). */
function tables(matrix: Matrix, fullRange: boolean): Tables {
  const key = `${matrix}:${fullRange}`;
  const cached = tableCache.get(key);
  if (cached) return cached;
  const c = MATRICES[matrix];
  let [crv, cbu, cgu, cgv]: number[] = [c[0], c[1], -c[2], -c[3]];
  let cy = 1 << 16;
  let oy = 0;
  if (fullRange) [crv, cbu, cgu, cgv] = [crv, cbu, cgu, cgv].map((x) => cdiv(x * 224, 255));
  else {
    cy = cdiv(cy * 255, 219);
    oy = 16 << 16;
  }
  [crv, cbu, cgu, cgv] = [crv, cbu, cgu, cgv].map((x) => cdiv(x * 65536 + 0x8000, cy)); // per unit of luma scale
  const y = new Uint8Array(1024);
  let yb = -(384 << 16) - oy;
  for (let i = 0; i < 1024; i++, yb += cy) y[i] = Math.max(0, Math.min(255, Math.floor((yb + 0x8000) / 65536)));
  const yoffs = fullRange ? 384 : 326;
  const fill = (inc: number, base: number) => Int32Array.from({ length: 256 }, (_, i) => base - (inc >> 9) + Math.floor((i * inc) / 65536));
  const t: Tables = { y, rV: fill(crv, yoffs), gU: fill(cgu, yoffs), gV: fill(cgv, 0), bU: fill(cbu, yoffs) };
  tableCache.set(key, t);
  return t;
}

/** Bilinear taps [index0, index1, weight1] (weight in 1/2^precision, edges clamped) for each output position. */
function taps(outCount: number, srcCount: number, start: number, step: number, precision: number): Int32Array {
  const out = new Int32Array(outCount * 3);
  const one = 1 << precision;
  for (let i = 0; i < outCount; i++) {
    const s = start + i * step;
    const p = Math.floor(s);
    const w = Math.round((s - p) * one);
    out[3 * i] = Math.min(Math.max(p, 0), srcCount - 1);
    out[3 * i + 1] = Math.min(Math.max(p + 1, 0), srcCount - 1);
    out[3 * i + 2] = w;
  }
  return out;
}

/**
 * One frame of planar 4:2:0 samples (Y plane, then U, then V; little-endian values of `format.bits` bits, as
 * ffmpeg's yuv420pNle rawvideo) → RGB24, row-major [height, width, 3].
 */
export function yuv420HighDepthToRgb(planes: Uint16Array, width: number, height: number, format: HighDepthFormat, source = 'video'): Uint8Array {
  const cw = (width + 1) >> 1;
  const ch = (height + 1) >> 1;
  if (planes.length !== width * height + 2 * cw * ch) {
    throw new MediaError(source, `expected ${width * height + 2 * cw * ch} samples for a ${width}x${height} 4:2:0 frame, got ${planes.length}`);
  }
  const { bits } = format;
  const t = tables(format.matrix, format.fullRange);
  // Chroma positions in the source chroma grid, from swscale's local positions: (pos + 128) >> 1 for 2× subsampling.
  const srcX = (format.chroma[0] + 128) >> 1;
  const srcY = (format.chroma[1] + 128) >> 1;
  const hTaps = taps(cw, cw, (128 - srcX) / 256, 1, 14); // to the packed writer's centred half-width grid
  const vTaps = taps(height, ch, 0.25 - srcY / 256, 0.5, 12); // to every luma row
  const out = new Uint8Array(width * height * 3);
  const hU = new Int32Array(cw * ch);
  const hV = new Int32Array(cw * ch);
  const shift = bits - 1;
  const widen = 15 - bits; // sample << widen: the 15-bit intermediate
  for (const [plane, dst] of [[width * height, hU], [width * height + cw * ch, hV]] as const) {
    for (let r = 0; r < ch; r++) {
      const row = plane + r * cw;
      for (let i = 0; i < cw; i++) {
        const w = hTaps[3 * i + 2];
        dst[r * cw + i] = Math.floor((planes[row + hTaps[3 * i]] * ((1 << 14) - w) + planes[row + hTaps[3 * i + 1]] * w) / (1 << shift));
      }
    }
  }
  const round8 = (a: number, b: number, w: number) => Math.floor((a * (4096 - w) + b * w + (1 << 18)) / (1 << 19));
  const clamp8 = (v: number) => (v < 0 ? 0 : v > 255 ? 255 : v);
  for (let y = 0; y < height; y++) {
    const [r0, r1, w] = [vTaps[3 * y] * cw, vTaps[3 * y + 1] * cw, vTaps[3 * y + 2]];
    for (let x = 0; x < width; x++) {
      const i = x >> 1;
      const u = clamp8(round8(hU[r0 + i], hU[r1 + i], w));
      const v = clamp8(round8(hV[r0 + i], hV[r1 + i], w));
      const l = Math.floor(((planes[y * width + x] << widen) * 4096 + (1 << 18)) / (1 << 19));
      const o = 3 * (y * width + x);
      out[o] = t.y[t.rV[v] + l];
      out[o + 1] = t.y[t.gU[u] + t.gV[v] + l];
      out[o + 2] = t.y[t.bU[u] + l];
    }
  }
  return out;
}
