import * as tf from '@tensorflow/tfjs';

/** max |x − ref| / max |ref| (or the absolute difference when ref is all zeros); the shapes must agree. */
export function relDiff(x: tf.Tensor, ref: tf.Tensor): number {
  expect(x.shape).toEqual(ref.shape);
  const xs = x.dataSync();
  const rs = ref.dataSync();
  let d = 0;
  let m = 0;
  for (let i = 0; i < rs.length; i++) {
    d = Math.max(d, Math.abs(xs[i] - rs[i]));
    m = Math.max(m, Math.abs(rs[i]));
  }
  return d / (m || 1);
}
