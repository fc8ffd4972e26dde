/**
 * Bit-identity at 7B width: the synthetic q_proj weight [4096, 4096] (src/weights/synthetic.ts, the same
 * formula as reference/synthetic.py), quantized here and by bitsandbytes 0.50.2 on CPU: NF4 with double quant
 * (float32), FP4 (rounded to bfloat16), int8 (bfloat16). sha256 of packed bytes, block scales, nested scales,
 * int8 codes and SCB, and the offset must all be equal (test/fixtures/bnb/synthetic_7b.json). 262144 blocks:
 * double quantization's mean runs over a long vector.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { FourBitType, WeightDtype, quantize4bit, quantizeInt8, roundToDtype } from '../../src/quantization';
import { syntheticWeight } from '../../src/weights/synthetic';
import { BNB } from './helpers';

interface Entry {
  dtype: WeightDtype;
  quant_type?: FourBitType;
  blocksize?: number;
  double_quant?: boolean;
  int8?: boolean;
  [hash: string]: unknown;
}
const fixture = JSON.parse(fs.readFileSync(path.join(BNB, 'synthetic_7b.json'), 'utf8')) as { key: string; shape: number[]; cases: Entry[] };
const sha = (a: ArrayBufferView) => createHash('sha256').update(Buffer.from(a.buffer, a.byteOffset, a.byteLength)).digest('hex');

test('synthetic 4096x4096 weight: every case equals bitsandbytes', () => {
  const float32 = syntheticWeight(fixture.key, fixture.shape);
  const bfloat16 = roundToDtype(float32, 'bfloat16');
  const got: unknown[] = [];
  const want: unknown[] = [];
  for (const c of fixture.cases) {
    const dtype = c.dtype;
    const weight = dtype === 'bfloat16' ? bfloat16 : float32;
    want.push(c);
    if (c.int8) {
      const s = quantizeInt8(weight, fixture.shape, { dtype });
      got.push({ dtype, int8: true, CB: sha(s.weight), SCB: sha(s.scb) });
      continue;
    }
    const s = quantize4bit(weight, fixture.shape, { quantType: c.quant_type, blockSize: c.blocksize, doubleQuant: c.double_quant, dtype });
    const entry: Record<string, unknown> = {
      dtype,
      quant_type: c.quant_type,
      blocksize: c.blocksize,
      double_quant: c.double_quant,
      packed: sha(s.packed),
      absmax: sha(s.absmax),
    };
    if (s.nested) Object.assign(entry, { nested_absmax: sha(s.nested.absmax), offset: s.nested.offset });
    got.push(entry);
  }
  expect(got).toEqual(want);
});
