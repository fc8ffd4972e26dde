/**
 * The bicubic resampler against Pillow 13's `Image.resize(size, BICUBIC)` (fixtures written by
 * reference/gen_images.py): downscales, upscales, one axis only, identity, 1-pixel outputs, one channel.
 */
import * as fs from 'fs';
import * as path from 'path';
import { InputError } from '../../src/errors';
import { pillowVerticalFirst, resizeBicubic, Window } from '../../src/processing/resample';

const DIR = path.join(__dirname, '..', 'fixtures', 'images');

interface ResampleCase {
  name: string;
  width: number;
  height: number;
  channels: number;
  sizes: [number, number][];
}

/** Reads the U8 tensors of a safetensors file (the only dtype these fixtures use). */
function readU8Tensors(file: string): Map<string, { shape: number[]; data: Uint8Array }> {
  const buf = fs.readFileSync(file);
  const headerLen = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const out = new Map<string, { shape: number[]; data: Uint8Array }>();
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (info.dtype !== 'U8') throw new Error(`${name}: expected U8, found ${info.dtype}`);
    const [b, e] = info.data_offsets;
    out.set(name, { shape: info.shape, data: new Uint8Array(buf.subarray(8 + headerLen + b, 8 + headerLen + e)) });
  }
  return out;
}

function maxAbsDiff(a: Uint8Array, b: Uint8Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const manifest = JSON.parse(fs.readFileSync(path.join(DIR, 'manifest.json'), 'utf8')) as {
  resample_cases: ResampleCase[];
};
const tensors = readU8Tensors(path.join(DIR, 'resample.safetensors'));

describe('resizeBicubic matches Pillow BICUBIC', () => {
  for (const c of manifest.resample_cases) {
    for (const [w, h] of c.sizes) {
      test(`${c.name} (${c.width}x${c.height}x${c.channels}) -> ${w}x${h}`, () => {
        const src = tensors.get(`${c.name}.src`)!;
        const expected = tensors.get(`${c.name}.${w}x${h}`)!;
        expect(expected.shape).toEqual([h, w, c.channels]);
        const out = resizeBicubic({ data: src.data, width: c.width, height: c.height, channels: c.channels }, w, h);
        expect(out.length).toBe(expected.data.length);
        // Tolerance 0: Pillow's 8-bit path is integer arithmetic on coefficients computed in float64; both are
        // reproduced operation for operation, so the bytes must be identical.
        expect(maxAbsDiff(out, expected.data)).toBe(0);
      });
    }
  }

  test('the fixtures exercise both pass orders', () => {
    const orders = new Set<boolean>();
    for (const c of manifest.resample_cases) {
      for (const [w, h] of c.sizes) {
        if (w !== c.width && h !== c.height) orders.add(pillowVerticalFirst(c.width, c.height, w, h));
      }
    }
    expect([...orders].sort()).toEqual([false, true]);
  });

  // [out width, out height, window]: horizontal-first upscale, then vertical-first downscale
  const windows: [number, number, Window][] = [
    [150, 97, { left: 37, top: 11, width: 50, height: 60 }],
    [60, 20, { left: 5, top: 3, width: 41, height: 9 }],
  ];
  for (const [ow, oh, win] of windows) {
    test(`a window of the ${ow}x${oh} output equals the same window of the whole output`, () => {
      const src = tensors.get('noise64x48.src')!;
      const img = { data: src.data, width: 64, height: 48, channels: 3 };
      const whole = resizeBicubic(img, ow, oh);
      const part = resizeBicubic(img, ow, oh, win);
      const expected = new Uint8Array(win.width * win.height * 3);
      for (let y = 0; y < win.height; y++) {
        const from = ((y + win.top) * ow + win.left) * 3;
        expected.set(whole.subarray(from, from + win.width * 3), y * win.width * 3);
      }
      expect(maxAbsDiff(part, expected)).toBe(0); // exact: the same per-pixel computation
    });
  }

  test('rejects bad sizes, windows and buffers with InputError', () => {
    const img = { data: new Uint8Array(12), width: 2, height: 2, channels: 3 };
    expect(() => resizeBicubic(img, 0, 3)).toThrow(InputError);
    expect(() => resizeBicubic(img, 2.5, 3)).toThrow(InputError);
    expect(() => resizeBicubic({ ...img, data: new Uint8Array(11) }, 3, 3)).toThrow(/12 bytes, found 11/);
    expect(() => resizeBicubic(img, 4, 4, { left: 2, top: 0, width: 3, height: 1 })).toThrow(InputError);
    expect(() => resizeBicubic({ ...img, channels: 5 }, 3, 3)).toThrow(InputError);
  });
});
