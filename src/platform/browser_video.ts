/**
 * Videos in the page: MP4 / MOV demuxed by mp4box.js, decoded by WebCodecs' VideoDecoder (software), frames kept at
 * the same numbers as Node's ffmpeg reader (src/processing/frames.ts: sampleFrameIndices over the frames the stream
 * decodes to, in presentation order), and each kept frame's decoded planes turned into RGB with swscale's own
 * arithmetic (src/processing/yuv.ts) and, for H.264, the matrix and range the stream's SPS declares, read as ffmpeg
 * reads them (src/processing/h264.ts). H.264 decoding is bit-exact by its specification, so 8-bit 4:2:0 video gives
 * the same RGB bytes as ffmpeg in Node (and PyAV). Frames the decoder hands out in another layout (RGB, GPU frames)
 * are drawn through a canvas instead: close to ffmpeg, not equal. Other containers (WebM, AVI, MKV) are refused with
 * a MediaError.
 */
import { createFile, DataStream, Endianness, MP4BoxBuffer, type Movie, type Sample, type Track } from 'mp4box';
import { MediaError } from '../errors';
import { ReadVideoOptions, VideoFrames, VideoSource, explicitIndices, framesToKeep } from '../processing/frames';
import { ColourSignal, avcColourSignal } from '../processing/h264';
import { fetchMedia } from './browser_image';
import { yuvToRgb } from '../processing/yuv';

function describe(source: VideoSource): string {
  if (typeof source === 'string') return source;
  const name = (source as { name?: unknown }).name;
  return typeof name === 'string' && name !== '' ? name : `video blob (${source.size} bytes)`;
}

async function readBytes(source: VideoSource, name: string): Promise<ArrayBuffer> {
  return typeof source === 'string' ? (await fetchMedia(source, name)).arrayBuffer() : source.arrayBuffer();
}

interface Demuxed {
  track: Track;
  description: Uint8Array | undefined;
  samples: Sample[];
}

/** The codec box of the first sample entry (avcC, hvcC, vpcC, av1C) without its 8-byte header: VideoDecoder's description. */
function codecDescription(file: ReturnType<typeof createFile>, track: Track): Uint8Array | undefined {
  for (const entry of file.getTrackById(track.id).mdia.minf.stbl.stsd.entries) {
    const e = entry as unknown as Record<string, { write(stream: DataStream): void } | undefined>;
    const box = e.avcC ?? e.hvcC ?? e.vpcC ?? e.av1C;
    if (box) {
      const stream = new DataStream(undefined, 0, Endianness.BIG_ENDIAN);
      box.write(stream);
      return new Uint8Array(stream.buffer as ArrayBuffer, 8);
    }
  }
  return undefined;
}

function demux(bytes: ArrayBuffer, name: string): Demuxed {
  const file = createFile();
  let movie: Movie | null = null;
  let failure: string | null = null;
  const samples: Sample[] = [];
  file.onError = (_module, message) => (failure = message);
  file.onSamples = (_id, _user, list) => samples.push(...list);
  // Extraction starts as soon as the index is read, while the sample data is still held.
  file.onReady = (info) => {
    movie = info;
    const track = info.videoTracks[0];
    if (!track) return;
    file.setExtractionOptions(track.id, null, { nbSamples: Math.max(1, track.nb_samples) });
    file.start();
  };
  try {
    file.appendBuffer(MP4BoxBuffer.fromArrayBuffer(bytes, 0));
    file.flush();
  } catch (err) {
    failure = (err as Error).message;
  }
  const info = movie as Movie | null;
  if (!info) {
    throw new MediaError(name, `not an MP4/MOV file the page can read${failure ? ` (${failure})` : ''}; in the browser videos must be MP4 or MOV (convert with ffmpeg), or use Node`);
  }
  const track = info.videoTracks[0];
  if (!track) throw new MediaError(name, 'contains no video stream');
  return { track, description: codecDescription(file, track), samples };
}

/** The frame's own colour space, for codecs whose stream headers are not read here. */
function signalOf(frame: VideoFrame): Omit<ColourSignal, 'matrixCoefficients'> {
  const m: string | null = frame.colorSpace.matrix;
  return { matrix: m === 'bt709' ? 'bt709' : m === 'bt2020-ncl' ? 'bt2020' : 'bt601', fullRange: frame.colorSpace.fullRange ?? false };
}

const PLANAR: Record<string, [number, number]> = { I420: [1, 1], I420A: [1, 1], I422: [1, 0], NV12: [1, 1] };

/**
 * One decoded frame as RGB24: swscale's arithmetic on the decoded planes, with the stream's colour signal as ffmpeg
 * reads it (`signal`; browsers assume BT.709 where an H.264 stream says nothing, ffmpeg BT.601), else through a canvas.
 */
async function frameToRgb(frame: VideoFrame, signal: Omit<ColourSignal, 'matrixCoefficients'> | null): Promise<Uint8Array> {
  const { width, height } = frame.visibleRect ?? { width: frame.displayWidth, height: frame.displayHeight };
  const shifts = frame.format ? PLANAR[frame.format] : undefined;
  if (shifts) {
    const buffer = new Uint8Array(frame.allocationSize());
    const layout = await frame.copyTo(buffer);
    const plane = (i: number) => buffer.subarray(layout[i].offset);
    const nv12 = frame.format === 'NV12';
    return yuvToRgb(
      { width, height, y: plane(0), u: plane(1), v: nv12 ? plane(1) : plane(2), yStride: layout[0].stride, uvStride: layout[1].stride, shiftX: shifts[0], shiftY: shifts[1], interleaved: nv12 },
      (signal ?? signalOf(frame)).matrix,
      (signal ?? signalOf(frame)).fullRange,
    );
  }
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true })!;
  ctx.drawImage(frame, 0, 0);
  const rgba = ctx.getImageData(0, 0, width, height).data;
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0, o = 0; o < rgb.length; i += 4, o += 3) rgb.set(rgba.subarray(i, i + 3), o);
  return rgb;
}

export async function readVideoFramesInPage(source: VideoSource, options: ReadVideoOptions): Promise<VideoFrames> {
  const name = describe(source);
  const explicit = explicitIndices(options);
  const bytes = await readBytes(source, name);
  if (bytes.byteLength === 0) throw new MediaError(name, 'file is empty (0 bytes), not a video');
  if (typeof VideoDecoder === 'undefined') throw new MediaError(name, 'this browser has no WebCodecs VideoDecoder (it needs a secure context: https or localhost)');
  const { track, description, samples } = demux(bytes, name);
  const totalFrames = samples.length;
  if (totalFrames === 0) throw new MediaError(name, 'the video stream has no decodable frames (0 frames)');
  const { sampled, wanted } = framesToKeep(totalFrames, options, explicit);

  const config: VideoDecoderConfig = { codec: track.codec, description, codedWidth: track.video?.width, codedHeight: track.video?.height, hardwareAcceleration: 'prefer-software' };
  const support = await VideoDecoder.isConfigSupported(config).catch(() => ({ supported: false }));
  if (!support.supported) throw new MediaError(name, `this browser cannot decode its ${track.codec} video`);

  const signal = description && track.codec.startsWith('avc') ? avcColourSignal(description) : null;
  const keep = new Set(wanted);
  const kept = new Map<number, Promise<{ rgb: Uint8Array; width: number; height: number }>>();
  let decoded = 0;
  let failure: Error | null = null;
  const decoder = new VideoDecoder({
    output: (frame) => {
      const n = decoded++;
      if (!keep.has(n)) return frame.close();
      const { width, height } = frame.visibleRect ?? { width: frame.displayWidth, height: frame.displayHeight };
      kept.set(n, frameToRgb(frame, signal).then((rgb) => ({ rgb, width, height })).finally(() => frame.close()));
    },
    error: (err) => (failure = err),
  });
  try {
    decoder.configure(config);
    for (const s of samples) {
      const timestamp = Math.round((1e6 * s.cts) / s.timescale);
      decoder.decode(new EncodedVideoChunk({ type: s.is_sync ? 'key' : 'delta', timestamp, duration: Math.round((1e6 * s.duration) / s.timescale), data: s.data! }));
    }
    await decoder.flush();
  } catch (err) {
    throw new MediaError(name, `the browser could not decode it (${(failure ?? err as Error).message})`);
  } finally {
    if (decoder.state !== 'closed') decoder.close();
  }
  if (failure) throw new MediaError(name, `the browser could not decode it (${(failure as Error).message})`);
  if (decoded !== totalFrames) throw new MediaError(name, `the container lists ${totalFrames} frames but the decoder gave ${decoded}`);
  const images = await Promise.all(wanted.map((i) => kept.get(i)!));
  const { width, height } = images[0];
  const odd = images.find((im) => im.width !== width || im.height !== height);
  if (odd) throw new MediaError(name, `frame size changes mid-stream (${width}x${height}, then ${odd.width}x${odd.height}); not supported`);
  return { frames: images.map((im) => im.rgb), width, height, indices: wanted, sampledIndices: sampled, totalFrames };
}
