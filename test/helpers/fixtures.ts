/** Access to the Python-generated fixtures under test/fixtures. */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { SafetensorsFile } from '../../src/weights/safetensors';

export const FIXTURES = path.join(__dirname, '..', 'fixtures');
export const MODELS = path.join(FIXTURES, 'models');
export const CASES = path.join(FIXTURES, 'cases');

export function modelDir(name: string): string {
  return path.join(MODELS, name);
}

export function caseNames(model: string): string[] {
  const dir = path.join(CASES, model);
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.safetensors'))
    .map((f) => f.replace(/\.safetensors$/, ''))
    .sort();
}

export interface CaseFile {
  file: SafetensorsFile;
  meta: Record<string, string>;
  has(name: string): boolean;
  tensor(name: string): Promise<tf.Tensor>;
  /** Integer tensor as nested rows (ids, masks). */
  rows(name: string): Promise<number[][]>;
  close(): Promise<void>;
}

export async function openCase(model: string, name: string): Promise<CaseFile> {
  const file = await SafetensorsFile.open(path.join(CASES, model, `${name}.safetensors`));
  return {
    file,
    meta: file.metadata,
    has: (n) => file.tensors.has(n),
    tensor: (n) => file.readTensor(n),
    rows: async (n) => {
      const t = await file.readTensor(n);
      const r = t.arraySync() as number[][];
      t.dispose();
      return r;
    },
    close: () => file.close(),
  };
}

/** max |a − b| and max |a − b| / (|b| + 1e-6), on the host. */
export function diff(actual: tf.Tensor, expected: tf.Tensor): { abs: number; rel: number } {
  if (actual.shape.join() !== expected.shape.join()) {
    throw new Error(`shape mismatch: actual [${actual.shape}] vs expected [${expected.shape}]`);
  }
  const a = actual.dataSync();
  const b = expected.dataSync();
  let abs = 0;
  let rel = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= abs)) abs = d; // NaN propagates
    const r = d / (Math.abs(b[i]) + 1e-6);
    if (!(r <= rel)) rel = r;
  }
  return { abs, rel };
}
