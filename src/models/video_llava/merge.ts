/**
 * Placeholder merge: rows of the token embeddings whose id is the image (video) token are replaced,
 * in order of appearance over the flattened batch (row 0 first), by the rows of the image (video)
 * features. The same rule as the reference's masked_scatter.
 */
import * as tf from '@tensorflow/tfjs';
import { InputError } from '../../errors';

export interface PlaceholderSource {
  tokenId: number;
  features: tf.Tensor3D | null; // [N, tokensPerItem, D]
  argument: string; // the input the features came from, for error messages
  kind: 'image' | 'video';
}

export function countTokens(ids: number[][], tokenId: number): number {
  let n = 0;
  for (const row of ids) for (const id of row) if (id === tokenId) n++;
  return n;
}

/** Checks the counts and returns [B, L, D] embeddings with features scattered in. */
export function mergePlaceholders(embeds: tf.Tensor3D, ids: number[][], sources: PlaceholderSource[]): tf.Tensor3D {
  const [B, L, D] = embeds.shape;
  const index = new Int32Array(B * L);
  for (let i = 0; i < index.length; i++) index[i] = i;
  const tables: tf.Tensor3D[] = [];
  let offset = B * L;
  for (const src of sources) {
    const tokens = countTokens(ids, src.tokenId);
    const rows = src.features ? src.features.shape[0] * src.features.shape[1] : 0;
    if (tokens !== rows && (src.features || tokens > 0)) {
      const what = src.kind === 'image' ? 'Image' : 'Video';
      throw new InputError(
        src.argument,
        `${what} features and ${src.kind} tokens do not match: the prompt has ${tokens} ${src.kind} tokens (id ${src.tokenId}), ` +
          `the ${src.kind}s give ${rows} feature rows${src.features ? ` ([${src.features.shape.join(', ')}])` : ''}`,
      );
    }
    if (!src.features) continue;
    let k = 0;
    for (let b = 0; b < B; b++) for (let l = 0; l < L; l++) if (ids[b][l] === src.tokenId) index[b * L + l] = offset + k++;
    tables.push(src.features);
    offset += rows;
  }
  if (tables.length === 0) return embeds.clone();
  return tf.tidy(() => {
    const flat = [embeds, ...tables].map((t) => tf.reshape(t, [-1, D]));
    const all = tf.concat(flat, 0);
    return tf.reshape(tf.gather(all, tf.tensor1d(index, 'int32')), [B, L, D]) as tf.Tensor3D;
  });
}
