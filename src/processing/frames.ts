/**
 * Which frames of a video the model sees, shared by every decoder (ffmpeg in Node: ./video.ts; WebCodecs in the
 * page: src/platform/browser_video.ts), so both keep the same frame numbers.
 */
import { InputError } from '../errors';

/** A video to decode: a file path (Node) or URL (browser), or a Blob (a File from a page's picker or drop). */
export type VideoSource = string | Blob;

export interface ReadVideoOptions {
  /** How many frames to sample uniformly (default 8); ignored when `indices` is given. */
  numFrames?: number;
  /** Explicit frame numbers (0-based, in decode order) instead of uniform sampling. */
  indices?: readonly number[];
  /** Frame numbers as a function of the decoded frame count (another sampling rule, e.g. the original's linspace). */
  sampler?: (totalFrames: number) => readonly number[];
  /** Limit for the whole call, all ffmpeg runs together (default 120 000 ms). */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Limit on decoded RGB bytes held at once (default 1 GiB). */
  maxBytes?: number;
}

export interface VideoFrames {
  /** One RGB24 image per kept frame, row-major [height, width, 3]. */
  frames: Uint8Array[];
  width: number;
  height: number;
  /** The frame number of each entry of `frames`: each wanted index once, ascending, as read_video_pyav. */
  indices: number[];
  /** The indices asked for: `options.indices`, or sampleFrameIndices(totalFrames, numFrames). */
  sampledIndices: number[];
  /** Frames actually decoded from the first video stream. */
  totalFrames: number;
}

/**
 * numpy's `np.arange(0, total, total / numFrames).astype(int)`, reproduced exactly: the length is
 * ceil(total / step) in float64, so rounding can give numFrames + 1 entries whose last equals total - 1 or
 * even total (e.g. total 17, numFrames 7). When total < numFrames, indices repeat.
 */
export function sampleFrameIndices(total: number, numFrames = 8): number[] {
  if (!Number.isSafeInteger(total) || total < 1) {
    throw new InputError('total', `expected a positive integer frame count, got ${total}`);
  }
  if (!Number.isSafeInteger(numFrames) || numFrames < 1) {
    throw new InputError('numFrames', `expected a positive integer, got ${numFrames}`);
  }
  const step = total / numFrames;
  const length = Math.ceil(total / step);
  const out = new Array<number>(length);
  for (let i = 0; i < length; i++) out[i] = Math.trunc(i * step); // numpy fills start + i * step
  return out;
}

function checkIndices(indices: readonly number[]): number[] {
  if (indices.length === 0) throw new InputError('indices', 'expected at least one frame index, got an empty list');
  for (const i of indices) {
    if (!Number.isSafeInteger(i) || i < 0) {
      throw new InputError('indices', `expected non-negative integer frame numbers, got ${i}`);
    }
  }
  return [...indices];
}

/** The explicit indices of `options`, checked (undefined when frames are sampled uniformly); checks numFrames. */
export function explicitIndices(options: ReadVideoOptions): number[] | undefined {
  const numFrames = options.numFrames ?? 8;
  if (options.indices === undefined && (!Number.isSafeInteger(numFrames) || numFrames < 1)) {
    throw new InputError('numFrames', `expected a positive integer, got ${numFrames}`);
  }
  return options.indices === undefined ? undefined : checkIndices(options.indices);
}

/** The frames to keep, each once, ascending, past-the-end ones dropped (as read_video_pyav): sampled and kept. */
export function framesToKeep(totalFrames: number, options: ReadVideoOptions, explicit = explicitIndices(options)): { sampled: number[]; wanted: number[] } {
  const sampled = explicit ?? (options.sampler ? checkIndices(options.sampler(totalFrames)) : sampleFrameIndices(totalFrames, options.numFrames ?? 8));
  const wanted = [...new Set(sampled)].filter((i) => i < totalFrames).sort((a, b) => a - b);
  if (wanted.length === 0) {
    throw new InputError('indices', `every index is past the last frame (the video has ${totalFrames} frames, 0..${totalFrames - 1})`);
  }
  return { sampled, wanted };
}
