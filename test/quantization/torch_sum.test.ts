/**
 * torchSumFloat32 / torchMeanFloat32 against torch.sum / torch.mean on CPU (one thread), torch run with CPU
 * capability AVX512 (this machine) and forced to AVX2: test/fixtures/bnb/torch_sum.safetensors. Both equal the
 * 8-lane cascade (torch's sum kernel has no AVX512 build). Exact equality: double quantization stores
 * absmax - mean(absmax), so one ulp of the mean changes the checkpoint.
 */
import * as path from 'path';
import { torchMeanFloat32, torchSumFloat32 } from '../../src/quantization';
import { SafetensorsFile } from '../../src/weights/safetensors';
import { syntheticWeight } from '../../src/weights/synthetic';
import { BNB } from './helpers';

let file: SafetensorsFile;
beforeAll(async () => {
  file = await SafetensorsFile.open(path.join(BNB, 'torch_sum.safetensors'));
});
afterAll(() => file.close());

test.each(['avx512', 'avx2'])('sum and mean of |synthetic| vectors equal torch (capability %s)', async (cap) => {
  const sizes = Array.from(await file.readInt32('sizes'));
  const sums = await file.readFloat32(`sum.${cap}`);
  const means = await file.readFloat32(`mean.${cap}`);
  const got: Array<[number, number, number]> = [];
  const want: Array<[number, number, number]> = [];
  sizes.forEach((n, i) => {
    const x = syntheticWeight(`bnb.sum.${n}.bias`, [n]).map(Math.abs);
    got.push([n, torchSumFloat32(x), torchMeanFloat32(x)]);
    want.push([n, sums[i], means[i]]);
  });
  expect(got).toEqual(want);
});
