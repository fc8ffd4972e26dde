/**
 * The original Video-LLaVA video preprocessing (LanguageBind's `get_video_transform`, decord backend), as an option
 * beside the Hugging Face pipeline (which resizes with Pillow bicubic on uint8 first and normalises last):
 *
 *   frames    np.linspace(0, total - 1, num_frames, dtype=int): the first and the last frame always, repeats
 *             when the video is shorter than num_frames (decord's get_batch returns them)
 *   x / 255   uint8 → float32 (Lambda(lambda x: x / 255.0))
 *   normalise (x − mean) / std per channel, OpenAI CLIP values, float32 (NormalizeVideo) — BEFORE resizing
 *   resize    pytorchvideo ShortSideScale(224) (224 = the tower's input size; `size` here): the short side to 224, the long side to
 *             floor(long / short · 224) (float64), torch.nn.functional.interpolate bilinear, align_corners=False,
 *             no antialiasing, in float32
 *   crop      CenterCropVideo(224): offsets int(round((h − 224) / 2)) with Python's round (halves to even)
 *   flip      RandomHorizontalFlipVideo(p=0.5) sits in the original's INFERENCE transform: each clip is mirrored
 *             with probability 0.5. Here it is off unless asked for, and seeded (`horizontalFlip`).
 * Verified against the pinned original source (reference/gen_original.py runs it; test/processing/languagebind.test.ts).
 */
import { InputError } from '../errors';
import { Rng } from '../data/rng';
import { ImageInput, decodeImage } from './image';
import { platform } from '../platform';
import { VideoSource } from './frames';

export const OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073];
export const OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711];
export const LANGUAGEBIND_SIZE = 224;

const f32 = Math.fround;

/** numpy's np.linspace(0, total - 1, n, dtype=int): i·step in float64 truncated, the last entry exactly total − 1. */
export function originalFrameIndices(total: number, n: number): number[] {
  if (!Number.isSafeInteger(total) || total < 1) throw new InputError('total', `expected a positive integer frame count, got ${total}`);
  if (!Number.isSafeInteger(n) || n < 1) throw new InputError('numFrames', `expected a positive integer, got ${n}`);
  if (n === 1) return [0];
  const step = (total - 1) / (n - 1);
  return Array.from({ length: n }, (_, i) => (i === n - 1 ? total - 1 : Math.trunc(i * step)));
}

/** Seeded RandomHorizontalFlipVideo: one draw per clip. */
export interface HorizontalFlipOptions {
  /** Probability of mirroring a clip (the original's 0.5). */
  probability?: number;
  seed: number;
}

export function flipDecisions(clips: number, flip: HorizontalFlipOptions | undefined): boolean[] {
  if (!flip) return new Array<boolean>(clips).fill(false);
  const p = flip.probability ?? 0.5;
  if (!(p >= 0 && p <= 1)) throw new InputError('horizontalFlip.probability', `expected a number in [0, 1], found ${p}`);
  if (!Number.isSafeInteger(flip.seed)) throw new InputError('horizontalFlip.seed', `expected an integer, found ${flip.seed}`);
  const rng = new Rng(flip.seed);
  return Array.from({ length: clips }, () => rng.next() < p);
}

const bits = new Float32Array(1);
const bitsInt = new Int32Array(bits.buffer);

/** The float32 next to x (x ≠ 0, finite) away from zero (up = true) or toward it. */
function adjacent(x: number, up: boolean): number {
  bits[0] = x;
  bitsInt[0] += up ? 1 : -1;
  return bits[0];
}

/**
 * fmaf: a·b + c with one rounding to float32, for float32 a, b, c. The product is exact in float64 (48 bits); the
 * sum is rounded to float64 and then to float32, which can differ from one rounding only when the float64 sum
 * falls exactly halfway between two float32s: the sum's rounding error (TwoSum) then says which way to go.
 */
export function fmaf(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const r = f32(s);
  if (r === s || !Number.isFinite(s)) return r;
  const bb = s - p;
  const err = p - (s - bb) + (c - bb);
  if (err === 0) return r;
  if (r === 0) return r;
  const other = adjacent(r, Math.abs(r) < Math.abs(s)); // the float32 on s's other side
  if ((r + other) / 2 !== s) return r;
  return err > 0 === other > r ? other : r;
}

/** Source index and weights of torch's linear interpolation (align_corners=False), in float32 as its CPU kernel. */
function linearTaps(inSize: number, outSize: number): { i0: Int32Array; i1: Int32Array; w0: Float32Array; w1: Float32Array } {
  const scale = f32(inSize / outSize);
  const i0 = new Int32Array(outSize);
  const i1 = new Int32Array(outSize);
  const w0 = new Float32Array(outSize);
  const w1 = new Float32Array(outSize);
  for (let o = 0; o < outSize; o++) {
    let src = f32(f32(scale * f32(o + 0.5)) - 0.5);
    if (src < 0) src = 0;
    const idx = Math.min(Math.floor(src), inSize - 1);
    const lambda = Math.min(Math.max(f32(src - idx), 0), 1);
    i0[o] = idx;
    i1[o] = idx + (idx < inSize - 1 ? 1 : 0);
    w1[o] = lambda;
    w0[o] = f32(1 - lambda);
  }
  return { i0, i1, w0, w1 };
}

/** Output size of ShortSideScale(size) for an h × w frame. */
export function shortSideScaleSize(h: number, w: number, size = LANGUAGEBIND_SIZE): { height: number; width: number } {
  return w < h ? { height: Math.floor((h / w) * size), width: size } : { height: size, width: Math.floor((w / h) * size) };
}

/** CenterCropVideo's offset: int(round((n − crop) / 2)), Python's round (ties to even). */
function centerOffset(n: number, crop: number): number {
  const x = (n - crop) / 2;
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * One clip of RGB24 frames (each [height, width, 3]) → [T, 3, size, size] float32, the LanguageBind transform.
 * Only the crop window of the resized frame is computed (the crop takes rows and columns of the resize output
 * as they are, so the values are the same).
 */
export function languageBindTransform(frames: Uint8Array[], width: number, height: number, flip = false, size = LANGUAGEBIND_SIZE): Float32Array {
  if (frames.length === 0) throw new InputError('frames', 'expected at least one frame');
  for (const [t, f] of frames.entries()) {
    if (f.length !== width * height * 3) throw new InputError(`frames[${t}]`, `expected ${width}x${height} RGB24 (${width * height * 3} bytes), found ${f.length}`);
  }
  const out = shortSideScaleSize(height, width, size);
  if (out.height < size || out.width < size) throw new InputError('frames', `a ${width}x${height} frame scales to ${out.width}x${out.height}, smaller than the ${size} crop`);
  const top = centerOffset(out.height, size);
  const left = centerOffset(out.width, size);
  const rows = linearTaps(height, out.height);
  const cols = linearTaps(width, out.width);
  const result = new Float32Array(frames.length * 3 * size * size);
  const plane = new Float32Array(width * height);
  for (const [t, frame] of frames.entries()) {
    for (let c = 0; c < 3; c++) {
      const mean = f32(OPENAI_CLIP_MEAN[c]);
      const std = f32(OPENAI_CLIP_STD[c]);
      for (let i = 0; i < width * height; i++) plane[i] = f32(f32(f32(frame[i * 3 + c] / 255) - mean) / std);
      const base = (t * 3 + c) * size * size;
      for (let y = 0; y < size; y++) {
        const oy = top + y;
        const r0 = rows.i0[oy] * width;
        const r1 = rows.i1[oy] * width;
        const h0 = rows.w0[oy];
        const h1 = rows.w1[oy];
        for (let x = 0; x < size; x++) {
          const ox = left + x;
          const c0 = cols.i0[ox];
          const c1 = cols.i1[ox];
          const w0 = cols.w0[ox];
          const w1 = cols.w1[ox];
          // torch's CPU kernel computes t0·w0 + t1·w1 at both levels, compiled to fma(t0, w0, t1·w1) in float32
          const upper = fmaf(plane[r0 + c0], w0, f32(plane[r0 + c1] * w1));
          const lower = fmaf(plane[r1 + c0], w0, f32(plane[r1 + c1] * w1));
          const v = fmaf(upper, h0, f32(lower * h1));
          result[base + y * size + (flip ? size - 1 - x : x)] = v;
        }
      }
    }
  }
  return result;
}

/** A video to preprocess: a file, or decoded frames (any ImageInput). */
export type LanguageBindVideoInput = VideoSource | { frames: ImageInput[]; indices?: number[] };

export interface LanguageBindVideos {
  data: Float32Array; // [N, T, 3, 224, 224]
  shape: [number, number, number, number, number];
  /** The frame numbers of each video, repeats included (np.linspace can repeat on short videos). */
  indices: number[][];
  flipped: boolean[];
}

/**
 * Videos through the original pipeline: files are decoded (ffmpeg) at originalFrameIndices(total, numFrames);
 * decoded frames are used as given (all of them). Every video must give the same frame count.
 */
export async function preprocessLanguageBindVideos(
  videos: LanguageBindVideoInput[],
  numFrames: number,
  flip?: HorizontalFlipOptions,
  size = LANGUAGEBIND_SIZE,
): Promise<LanguageBindVideos> {
  const flips = flipDecisions(videos.length, flip);
  const clips: Float32Array[] = [];
  const indices: number[][] = [];
  for (const [v, video] of videos.entries()) {
    let frames: Uint8Array[];
    let width: number;
    let height: number;
    if (typeof video === 'string' || (typeof Blob !== 'undefined' && video instanceof Blob)) {
      const r = await platform.readVideoFrames(video, { sampler: (total) => originalFrameIndices(total, numFrames) });
      const byIndex = new Map(r.indices.map((i, k) => [i, r.frames[k]]));
      frames = r.sampledIndices.map((i) => byIndex.get(i)!);
      ({ width, height } = r);
      indices.push(r.sampledIndices);
    } else {
      const clip = video as Exclude<LanguageBindVideoInput, VideoSource>;
      if (!clip || !Array.isArray(clip.frames) || clip.frames.length === 0) throw new InputError(`videos[${v}]`, 'expected a file path, a Blob or { frames } with at least one frame');
      const decoded = await Promise.all(clip.frames.map((f) => decodeImage(f)));
      ({ width, height } = decoded[0]);
      if (decoded.some((d) => d.width !== width || d.height !== height)) throw new InputError(`videos[${v}]`, 'its frames differ in size');
      frames = decoded.map((d) => d.data);
      indices.push(clip.indices ?? frames.map((_, i) => i));
    }
    if (clips.length > 0 && frames.length !== indices[0].length) {
      throw new InputError('videos', `video ${v} gives ${frames.length} frames but video 0 gives ${indices[0].length}; the videos of one call are stacked and must match`);
    }
    clips.push(languageBindTransform(frames, width, height, flips[v], size));
  }
  const T = indices[0].length;
  const data = new Float32Array(videos.length * T * 3 * size * size);
  clips.forEach((clip, v) => data.set(clip, v * clip.length));
  return { data, shape: [videos.length, T, 3, size, size], indices, flipped: flips };
}
