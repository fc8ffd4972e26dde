/**
 * A model whose weights come from the deterministic synthetic formula (src/weights/synthetic.ts),
 * keyed by the checkpoint names: the same values Python builds in reference/synthetic.py. Used where a
 * checkpoint would be too large to commit (the real 7B widths) and by the benchmarks.
 */
import * as tf from '@tensorflow/tfjs';
import { toLegacyKey } from '../../weights/key_map';
import { syntheticWeight } from '../../weights/synthetic';
import { VideoLlavaConfig } from './config';
import { VideoLlavaForConditionalGeneration } from './modeling';

export function syntheticVideoLlava(config: VideoLlavaConfig): VideoLlavaForConditionalGeneration {
  const model = new VideoLlavaForConditionalGeneration(config);
  for (const [path, param] of model.namedParameters()) {
    const key = toLegacyKey(path);
    param.set(tf.tensor(syntheticWeight(key, [...param.shape]), [...param.shape], 'float32'), key);
  }
  return model;
}
