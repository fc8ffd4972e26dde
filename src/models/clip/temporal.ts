/**
 * LanguageBind's temporal sub-block (`CLIPEncoderLayer` with `add_time_attn`, LanguageBind_Video_merge), which
 * the original Video-LLaVA video tower runs at the start of every encoder layer and the Hugging Face port drops:
 *
 *   h = x + temporal_embedding[:, :T]              per frame index, added to every token (CLS included), T > 1
 *   h = h + temporal_attn(temporal_layer_norm1(h))   attention across the T frames of each spatial position
 *
 * Hidden states arrive as [N·T, n, D], frame-major per video (video 0's T frames, then video 1's, ...), and the
 * attention runs on [N·n, T, D]: the T frames of one position of one video, never frames of another video.
 * The original regroups by `config.num_frames` whatever the input holds; here T is the input's frame count and
 * one the embedding does not cover is an error.
 */
import * as tf from '@tensorflow/tfjs';
import { InputError } from '../../errors';
import { Parameter } from '../../layers/module';
import { LayerNorm } from '../../layers/norm';
import type { ClipAttention } from './modeling';

/** The temporal weights of one encoder layer (they sit on the layer itself: their keys are the checkpoint's). */
export interface TemporalWeights {
  temporal_embedding: Parameter; // [1, maxFrames, D]
  temporal_layer_norm1: LayerNorm;
  temporal_attn: ClipAttention;
}

/** '(b t) n d -> (b n) t d' */
function toTime(x: tf.Tensor3D, frames: number): tf.Tensor3D {
  const [bt, n, d] = x.shape;
  return tf.reshape(tf.transpose(tf.reshape(x, [bt / frames, frames, n, d]), [0, 2, 1, 3]), [(bt / frames) * n, frames, d]);
}

/** '(b n) t d -> (b t) n d' */
function toFrames(y: tf.Tensor3D, n: number): tf.Tensor3D {
  const [bn, t, d] = y.shape;
  return tf.reshape(tf.transpose(tf.reshape(y, [bn / n, n, t, d]), [0, 2, 1, 3]), [(bn / n) * t, n, d]);
}

/** Checks that `total` frames group into videos of `frames` frames that the temporal embedding covers. */
export function checkFrames(total: number, frames: number, maxFrames: number): void {
  if (!Number.isInteger(frames) || frames < 1 || total % frames !== 0) {
    throw new InputError('pixelValuesVideos', `${total} frames cannot be grouped into videos of ${frames} frames`);
  }
  if (frames > maxFrames) {
    throw new InputError(
      'pixelValuesVideos',
      `videos of ${frames} frames, but the video tower's temporal_embedding covers ${maxFrames} (video_temporal_attention.num_frames); ` +
        `sample at most ${maxFrames} frames per video`,
    );
  }
}

/** x [N·T, n, D] → the input of the layer's spatial block, same shape. */
export function temporalBlock(w: TemporalWeights, x: tf.Tensor3D, frames: number): tf.Tensor3D {
  const [, n, D] = x.shape;
  checkFrames(x.shape[0], frames, w.temporal_embedding.shape[1]);
  return tf.tidy(() => {
    let h = toTime(x, frames); // [N·n, T, D]
    // The original adds the embedding only when T ≠ 1 (its T is config.num_frames; here the input's).
    if (frames !== 1) h = tf.add(h, tf.slice(w.temporal_embedding.value, [0, 0, 0], [1, frames, D]));
    const y = w.temporal_attn.call(w.temporal_layer_norm1.call(h) as tf.Tensor3D);
    return toFrames(tf.add(h, y) as tf.Tensor3D, n);
  });
}
