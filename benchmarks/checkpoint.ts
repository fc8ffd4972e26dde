/**
 * Writes a synthetic float32 checkpoint (config.json + model.safetensors) for a benchmark config,
 * streaming one tensor at a time so that writing a multi-GB file never holds the model in memory.
 * Key names are the ones save_pretrained of transformers 5.24 writes (toLegacyKey), so both
 * implementations load the same file through their ordinary loaders. Values: the synthetic formula.
 */
import * as fs from 'fs';
import * as path from 'path';
import { VideoLlavaConfig } from '../src/models/video_llava/config';
import { VideoLlavaForConditionalGeneration } from '../src/models/video_llava/modeling';
import { toLegacyKey } from '../src/weights/key_map';
import { syntheticWeight } from '../src/weights/synthetic';

export interface WrittenCheckpoint {
  dir: string;
  bytes: number; // tensor data bytes
  tensors: number;
  ms: number;
}

/** Checkpoint keys and shapes of a config, sorted by name, without allocating any weight. */
export function checkpointKeys(config: VideoLlavaConfig): Array<{ name: string; shape: number[] }> {
  const model = new VideoLlavaForConditionalGeneration(config); // parameters start empty ("meta")
  return model
    .namedParameters()
    .map(([p, param]) => ({ name: toLegacyKey(p), shape: [...param.shape] }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

export function writeSyntheticCheckpoint(dir: string, configText: string, config: VideoLlavaConfig): WrittenCheckpoint {
  const t0 = performance.now();
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), configText);
  const keys = checkpointKeys(config);
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const { name, shape } of keys) {
    const bytes = 4 * shape.reduce((a, b) => a * b, 1);
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8); // data section 8-byte aligned
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const file = path.join(dir, 'model.safetensors');
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, prefix);
    fs.writeSync(fd, json);
    for (const { name, shape } of keys) {
      const data = syntheticWeight(name, shape);
      writeFully(fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    }
  } finally {
    fs.closeSync(fd);
  }
  return { dir, bytes: offset, tensors: keys.length, ms: performance.now() - t0 };
}

function writeFully(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += fs.writeSync(fd, bytes, done, Math.min(bytes.length - done, 1 << 30));
}
