/**
 * The original (LanguageBind) video preprocessing against the original transform itself, run by
 * reference/gen_original.py (get_video_transform, decord backend, pytorchvideo ShortSideScale, torchvision's video
 * transforms): frame indices exactly, pixel values bit-exact (sha256 of the whole float32 output) where the
 * stored figures say so, else within the bound stated below.
 */
import { createHash } from 'crypto';
import * as path from 'path';
import { LANGUAGEBIND_SIZE, flipDecisions, languageBindTransform, originalFrameIndices, shortSideScaleSize } from '../../src/processing/languagebind';
import { readVideoFrames } from '../../src/processing/video';
import { FIXTURES, openCase } from '../helpers/fixtures';

const S = LANGUAGEBIND_SIZE;

/** The clip formula of gen_original.py: one frame, (x*31 + y*17 + c*89 + ((x*x + 3*y*y) % 23)*11) % 256. */
function pattern(w: number, h: number): Uint8Array {
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let c = 0; c < 3; c++) out[(y * w + x) * 3 + c] = (x * 31 + y * 17 + c * 89 + ((x * x + 3 * y * y) % 23) * 11) % 256;
  return out;
}

function sha256(a: Float32Array): string {
  return createHash('sha256').update(Buffer.from(a.buffer, a.byteOffset, a.byteLength)).digest('hex');
}

/** Rows ROWS of every [T, C] plane of a [T, C, S, S] output. */
function rowsOf(a: Float32Array, rows: number[]): Float32Array {
  const planes = a.length / (S * S);
  const out = new Float32Array(planes * rows.length * S);
  for (let p = 0; p < planes; p++) rows.forEach((r, k) => out.set(a.subarray(p * S * S + r * S, p * S * S + (r + 1) * S), (p * rows.length + k) * S));
  return out;
}

function maxAbs(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('LanguageBind (original) video preprocessing', () => {
  test('frame indices equal np.linspace(0, total - 1, n, dtype=int)', async () => {
    const f = await openCase('original', 'preprocess');
    const grid = JSON.parse(f.meta.frame_indices) as Record<string, number[]>;
    await f.close();
    expect(Object.keys(grid).length).toBeGreaterThanOrEqual(30);
    for (const [key, expected] of Object.entries(grid)) {
      const [total, n] = key.split(',').map(Number);
      expect(originalFrameIndices(total, n)).toEqual(expected);
    }
  });

  const CLIPS: Array<[string, number, number]> = [
    ['landscape_64x48', 64, 48],
    ['portrait_36x60', 36, 60],
    ['large_240x232', 240, 232],
    ['square_224', 224, 224],
    ['odd_crop_231x225', 231, 225],
  ];

  test.each(CLIPS)('clip %s: pixel values bit-exact, plain and mirrored', async (name, w, h) => {
    const f = await openCase('original', 'preprocess');
    try {
      const rows = JSON.parse(f.meta.rows) as number[];
      for (const flip of [false, true]) {
        const key = `${name}.${flip ? 'flipped' : 'plain'}`;
        const ours = languageBindTransform([pattern(w, h)], w, h, flip);
        expect(JSON.parse(f.meta[`${key}.shape`])).toEqual([1, 3, S, S]);
        const stored = f.has(`${key}.pixels`) ? `${key}.pixels` : `${key}.rows`;
        const expected = (await f.tensor(stored)).dataSync() as Float32Array;
        expect(maxAbs(stored.endsWith('.pixels') ? ours : rowsOf(ours, rows), expected)).toBe(0);
        expect(sha256(ours)).toBe(f.meta[`${key}.sha256`]); // the whole output, bit for bit
      }
    } finally {
      await f.close();
    }
  });

  test('a video file end to end (ffmpeg here, decord there): indices and pixel values', async () => {
    const f = await openCase('original', 'preprocess');
    try {
      const file = path.join(FIXTURES, 'videos', 'huffyuv.avi');
      const total = Number(f.meta['file.total_frames']);
      const r = await readVideoFrames(file, { sampler: (n) => originalFrameIndices(n, 8) });
      expect(r.totalFrames).toBe(total);
      const byIndex = new Map(r.indices.map((i, k) => [i, r.frames[k]]));
      const frames = r.sampledIndices.map((i) => byIndex.get(i)!);
      const ours = languageBindTransform(frames, r.width, r.height);
      const rows = JSON.parse(f.meta.rows) as number[];
      const expected = (await f.tensor('file.rows')).dataSync() as Float32Array;
      expect(maxAbs(rowsOf(ours, rows), expected)).toBe(0); // same decoded RGB (lossless codec), same transform
      expect(sha256(ours)).toBe(f.meta['file.sha256']);
    } finally {
      await f.close();
    }
  });

  test('ShortSideScale sizes, seeded flips, and frames too small for the crop', () => {
    expect(shortSideScaleSize(480, 640)).toEqual({ height: 224, width: 298 });
    expect(shortSideScaleSize(640, 480)).toEqual({ height: 298, width: 224 });
    expect(flipDecisions(3, undefined)).toEqual([false, false, false]); // off by default
    expect(flipDecisions(64, { seed: 7 })).toEqual(flipDecisions(64, { seed: 7 }));
    const flips = flipDecisions(1000, { seed: 1 }).filter(Boolean).length;
    expect(flips).toBeGreaterThan(430);
    expect(flips).toBeLessThan(570);
    expect(flipDecisions(4, { seed: 1, probability: 1 })).toEqual([true, true, true, true]);
    expect(() => flipDecisions(1, { seed: 1, probability: 2 })).toThrow(/\[0, 1\]/);
    expect(() => languageBindTransform([new Uint8Array(10)], 2, 2)).toThrow(/expected 2x2 RGB24/);
  });
});
