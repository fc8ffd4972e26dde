/**
 * Decoded YUV → RGB24 with swscale's own integer arithmetic (the x86 SIMD path that ffmpeg and PyAV take for 8-bit
 * 4:2:0 video: `yuv420_rgb24` with `pmulhw` on 13-bit coefficients), so that frames a browser decodes (WebCodecs
 * hands out the decoded planes, which H.264 defines bit-exactly) become the same RGB bytes as Node's ffmpeg gives:
 * tested against ffmpeg on the sample videos (test/processing/yuv.test.ts).
 *
 *   Y' = ((8Y − 8·16) · yCoeff) >> 16          (limited range; full range: 8Y, 13-bit 1.0)
 *   U' = 8U − 1024, V' = 8V − 1024            (chroma shared by each 2×2 block: nearest, no interpolation)
 *   R = sat(Y' + (V'·vr >> 16)), G = sat(Y' + (U'·ug >> 16) + (V'·vg >> 16)), B = sat(Y' + (U'·ub >> 16))
 *
 * with the coefficients of swscale's sws_setColorspaceDetails for the frame's matrix (ff_yuv2rgb_coeffs).
 */

export type YuvMatrix = 'bt601' | 'bt709' | 'bt2020';

/** ff_yuv2rgb_coeffs rows: [crv, cbu, cgu, cgv] (16.16), per matrix (also used by ./yuv_high_depth.ts). */
export const SWSCALE_MATRICES = {
  bt601: [104597, 132201, 25675, 53279],
  bt709: [117489, 138438, 13975, 34925],
  fcc: [104448, 132798, 24759, 53109],
  smpte240m: [117579, 136230, 16907, 35559],
  bt2020: [110013, 140363, 12277, 42626],
} as const;

interface Coefficients {
  y: number;
  yOffset: number;
  vr: number;
  ub: number;
  ug: number;
  vg: number;
}

/** roundToInt16(x · 2^13) of swscale, for a 16.16 value x. */
const q13 = (x: number): number => Math.floor((x * 8192 + 32768) / 65536);
/** C integer division (truncates toward zero). */
const cdiv = (a: number, b: number): number => Math.trunc(a / b);

export function yuvCoefficients(matrix: YuvMatrix, fullRange: boolean): Coefficients {
  let [crv, cbu, cgu, cgv]: number[] = [...SWSCALE_MATRICES[matrix]];
  cgu = -cgu;
  cgv = -cgv;
  let cy = 1 << 16;
  let oy = 0;
  if (!fullRange) {
    cy = cdiv(cy * 255, 219);
    oy = 16 << 16;
  } else {
    [crv, cbu, cgu, cgv] = [crv, cbu, cgu, cgv].map((c) => cdiv(c * 224, 255));
  }
  return { y: q13(cy), yOffset: Math.floor((oy * 8 + 32768) / 65536), vr: q13(crv), ub: q13(cbu), ug: q13(cgu), vg: q13(cgv) };
}

export interface YuvImage {
  width: number;
  height: number;
  y: Uint8Array;
  u: Uint8Array;
  v: Uint8Array;
  yStride: number;
  /** Stride of the U and V planes (equal in every planar layout WebCodecs gives). */
  uvStride: number;
  /** log2 of the chroma subsampling: 4:2:0 is (1, 1), 4:2:2 (1, 0), 4:4:4 (0, 0). */
  shiftX: number;
  shiftY: number;
  /** Interleaved UV (NV12): u and v are the same plane, v one byte after u. */
  interleaved?: boolean;
}

const sat = (v: number): number => (v < 0 ? 0 : v > 255 ? 255 : v);
/** pmulhw: the high 16 bits of a signed 16 × 16 product. */
const mulhi = (a: number, c: number): number => (a * c) >> 16;

/** RGB24, row-major [height, width, 3]. */
export function yuvToRgb(img: YuvImage, matrix: YuvMatrix, fullRange: boolean): Uint8Array {
  const k = yuvCoefficients(matrix, fullRange);
  const { width, height, shiftX, shiftY } = img;
  const out = new Uint8Array(width * height * 3);
  const step = img.interleaved ? 2 : 1;
  for (let row = 0; row < height; row++) {
    const yRow = row * img.yStride;
    const cRow = (row >> shiftY) * img.uvStride;
    for (let col = 0; col < width; col++) {
      const yy = mulhi(img.y[yRow + col] * 8 - k.yOffset, k.y);
      const c = cRow + (col >> shiftX) * step;
      const u = img.u[c] * 8 - 1024;
      const v = (img.interleaved ? img.u[c + 1] : img.v[c]) * 8 - 1024;
      const o = (row * width + col) * 3;
      out[o] = sat(yy + mulhi(v, k.vr));
      out[o + 1] = sat(yy + mulhi(u, k.ug) + mulhi(v, k.vg));
      out[o + 2] = sat(yy + mulhi(u, k.ub));
    }
  }
  return out;
}
