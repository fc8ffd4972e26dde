/**
 * A model whose weights come from the deterministic synthetic formula (src/weights/synthetic.ts),
 * keyed by the checkpoint names: the same values Python builds in reference/synthetic.py. Used where a
 * checkpoint would be too large to commit (the real 7B widths) and by the benchmarks.
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { INDEX_FILE, SINGLE_FILE } from '../../weights/checkpoint';
import { encodeBFloat16, encodeFloat16 } from '../../weights/dtype';
import { toLegacyKey } from '../../weights/key_map';
import { writeSafetensorsLazy } from '../../weights/safetensors';
import { syntheticRange, syntheticWeight } from '../../weights/synthetic';
import { VideoLlavaConfig, loadVideoLlavaConfig } from './config';
import { VideoLlavaForConditionalGeneration } from './modeling';

export function syntheticVideoLlava(config: VideoLlavaConfig): VideoLlavaForConditionalGeneration {
  const model = new VideoLlavaForConditionalGeneration(config);
  for (const [path, param] of model.namedParameters()) {
    const key = toLegacyKey(path);
    param.set(tf.tensor(syntheticWeight(key, [...param.shape]), [...param.shape], 'float32'), key);
  }
  return model;
}

export interface SyntheticCheckpointOptions {
  /** Stored dtype of every tensor (default bfloat16, as the published checkpoint). */
  dtype?: 'bfloat16' | 'float16' | 'float32';
  /** Shard size in bytes (default 5e9: the published 7B's three shards). */
  maxShardBytes?: number;
  onTensor?: (written: number, total: number) => void;
}

/**
 * Writes config.json (as given) and the synthetic weights of that config in the layout save_pretrained writes
 * (legacy key names, shards with model.safetensors.index.json past maxShardBytes), one tensor in memory at a
 * time: a full-size checkpoint for checks and benchmarks, never committed. Deterministic: the same bytes every
 * time, and the values Python builds from the same key names (reference/synthetic.py).
 */
export async function writeSyntheticCheckpoint(dir: string, configJson: object, options: SyntheticCheckpointOptions = {}): Promise<string[]> {
  const { planShards } = await import('../../training/save');
  const dtype = options.dtype ?? 'bfloat16';
  const size = dtype === 'float32' ? 4 : 2;
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify({ ...configJson, torch_dtype: dtype }, null, 2) + '\n');
  const config = await loadVideoLlavaConfig(dir);
  const model = new VideoLlavaForConditionalGeneration(config); // shapes only: nothing is allocated
  const tensors = model.namedParameters().map(([p, param]) => ({ key: toLegacyKey(p), shape: [...param.shape], bytes: param.size * size }));
  const shape = new Map(tensors.map((t) => [t.key, t.shape]));
  const shards = planShards(tensors, options.maxShardBytes ?? 5e9);
  const names = shards.length === 1 ? [SINGLE_FILE] : shards.map((_, i) => `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`);
  const dtypeTag = dtype === 'bfloat16' ? 'BF16' : dtype === 'float16' ? 'F16' : 'F32';
  let written = 0;
  const bytesOf = async (key: string): Promise<Uint8Array> => {
    const s = shape.get(key)!;
    const n = s.reduce((a, b) => a * b, 1);
    const out = new Uint8Array(n * size);
    const step = 1 << 22; // elements generated at a time
    for (let start = 0; start < n; start += step) {
      const values = syntheticRange(key, s, start, Math.min(step, n - start));
      const encoded = dtype === 'bfloat16' ? encodeBFloat16(values) : dtype === 'float16' ? encodeFloat16(values) : values;
      out.set(new Uint8Array(encoded.buffer, encoded.byteOffset, encoded.byteLength), start * size);
    }
    options.onTensor?.(++written, tensors.length);
    return out;
  };
  const weightMap: Record<string, string> = {};
  for (const [i, keys] of shards.entries()) {
    await writeSafetensorsLazy(path.join(dir, names[i]), keys.map((key) => ({ name: key, dtype: dtypeTag, shape: shape.get(key)!, bytes: () => bytesOf(key) })), { format: 'pt' });
    for (const k of keys) weightMap[k] = names[i];
  }
  if (shards.length > 1) {
    const totalSize = tensors.reduce((s, t) => s + t.bytes, 0);
    await fsp.writeFile(path.join(dir, INDEX_FILE), JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2) + '\n');
  }
  return names;
}
