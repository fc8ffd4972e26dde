/**
 * Writing generated frames as real media files, so that the CLI's decoding path (ffmpeg) is exercised:
 * videos through ffmpeg (H.264 in MP4, yuv420p: what any player and the Python reference decode), images
 * as PNG through sharp.
 */
import { promises as fsp } from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { InputError, MediaError } from '../errors';
import { runFfmpeg } from '../processing/ffmpeg';
import type { RawImage } from '../processing/image';

export interface VideoWriteOptions {
  /** Frames per second (default 4: 8 frames make a 2-second clip). */
  fps?: number;
  /** x264 constant rate factor, 0 (lossless) to 51 (default 12: nearly transparent). */
  crf?: number;
}

function checkFrames(frames: readonly RawImage[]): void {
  if (frames.length === 0) throw new InputError('frames', 'expected at least one frame');
  const { width, height } = frames[0];
  frames.forEach((f, i) => {
    if (f.width !== width || f.height !== height || f.data.length !== width * height * 3) {
      throw new InputError(`frames[${i}]`, `expected ${width}x${height} RGB (${width * height * 3} bytes), found ${f.width}x${f.height} with ${f.data.length} bytes`);
    }
  });
}

/** Encodes RGB frames into an H.264 MP4 (one ffmpeg run; the raw frames go through a temporary file). */
export async function writeVideo(frames: readonly RawImage[], file: string, options: VideoWriteOptions = {}): Promise<void> {
  checkFrames(frames);
  const fps = options.fps ?? 4;
  const crf = options.crf ?? 12;
  if (!(fps > 0 && fps <= 240)) throw new InputError('fps', `expected a number in (0, 240], found ${fps}`);
  if (!(Number.isInteger(crf) && crf >= 0 && crf <= 51)) throw new InputError('crf', `expected an integer in [0, 51], found ${crf}`);
  const { width, height } = frames[0];
  if (width % 2 !== 0 || height % 2 !== 0) throw new InputError('frames', `yuv420p needs even sides, found ${width}x${height}`);
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'video-llava-frames-'));
  const raw = path.join(tmp, 'frames.rgb');
  try {
    await fsp.writeFile(raw, Buffer.concat(frames.map((f) => Buffer.from(f.data.buffer, f.data.byteOffset, f.data.byteLength))));
    await fsp.mkdir(path.dirname(path.resolve(file)), { recursive: true });
    // -bitexact and -threads 1 keep the output bytes the same from run to run
    const args = ['-y', '-v', 'error', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${width}x${height}`, '-r', String(fps), '-i', raw];
    args.push('-c:v', 'libx264', '-preset', 'medium', '-crf', String(crf), '-pix_fmt', 'yuv420p', '-threads', '1', '-bitexact', '-movflags', '+faststart', file);
    const r = await runFfmpeg(args, { source: file, timeoutMs: 60_000 });
    if (r.code !== 0) throw new MediaError(file, `ffmpeg could not encode the video (exit ${r.code}): ${r.stderr.trim().slice(-500)}`);
  } finally {
    await fsp.rm(tmp, { recursive: true, force: true });
  }
}

/** Writes one RGB frame as a PNG. */
export async function writeImage(frame: RawImage, file: string): Promise<void> {
  checkFrames([frame]);
  await fsp.mkdir(path.dirname(path.resolve(file)), { recursive: true });
  try {
    await sharp(Buffer.from(frame.data), { raw: { width: frame.width, height: frame.height, channels: 3 } }).png().toFile(file);
  } catch (e) {
    throw new MediaError(file, `cannot write the PNG: ${(e as Error).message}`);
  }
}
