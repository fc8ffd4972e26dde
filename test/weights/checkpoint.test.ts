/**
 * Checkpoint: the sharded fixture is a tiny bf16 LlamaForCausalLM saved by transformers'
 * save_pretrained (2 shards + index); expected values are torch's `.float()` of its state dict.
 * Broken checkpoints are built here in a temp dir.
 */
import { promises as fsp } from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { SafetensorsError } from '../../src/errors';
import { Checkpoint, INDEX_FILE, SINGLE_FILE } from '../../src/weights/checkpoint';
import { SafetensorsFile } from '../../src/weights/safetensors';

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'safetensors');
const SHARDED = path.join(FIXTURES, 'sharded');
const SHARD1 = 'model-00001-of-00002.safetensors';
const SHARD2 = 'model-00002-of-00002.safetensors';

interface Index {
  metadata: { total_size: number };
  weight_map: Record<string, string>;
}

let index: Index;
let tmp: string;

beforeAll(async () => {
  index = JSON.parse(await fsp.readFile(path.join(SHARDED, INDEX_FILE), 'utf8')) as Index;
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'checkpoint-test-'));
});
afterAll(() => fsp.rm(tmp, { recursive: true, force: true }));

/** A fresh copy of the sharded fixture, optionally with a replaced index. */
async function shardedCopy(indexJson?: unknown): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(tmp, 'ckpt-'));
  for (const f of [SHARD1, SHARD2, INDEX_FILE]) await fsp.copyFile(path.join(SHARDED, f), path.join(dir, f));
  if (indexJson !== undefined) {
    const text = typeof indexJson === 'string' ? indexJson : JSON.stringify(indexJson);
    await fsp.writeFile(path.join(dir, INDEX_FILE), text);
  }
  return dir;
}

async function openError(dir: string): Promise<SafetensorsError> {
  const err = await Checkpoint.open(dir).then(
    async (c) => {
      await c.close();
      return null;
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SafetensorsError);
  return err as SafetensorsError;
}

describe('the transformers-saved sharded checkpoint', () => {
  let ckpt: Checkpoint;
  let expected: SafetensorsFile;
  beforeAll(async () => {
    ckpt = await Checkpoint.open(SHARDED);
    expected = await SafetensorsFile.open(path.join(FIXTURES, 'expected.safetensors'));
  });
  afterAll(async () => {
    await ckpt.close();
    await expected.close();
  });

  it('lists exactly the index keys, each in the shard the index names', () => {
    expect(ckpt.indexFile).toBe(path.join(SHARDED, INDEX_FILE));
    expect(ckpt.keys()).toEqual(Object.keys(index.weight_map).sort());
    for (const name of ckpt.keys()) expect(path.basename(ckpt.fileOf(name).path)).toBe(index.weight_map[name]);
    expect(new Set(Object.values(index.weight_map))).toEqual(new Set([SHARD1, SHARD2]));
  });

  it('totalBytes equals the total_size transformers wrote', () => {
    expect(ckpt.totalBytes).toBe(index.metadata.total_size);
  });

  // Exact: bf16 -> f32 widening is lossless in torch and here.
  it('reads every tensor equal to torch .float(), bit for bit', async () => {
    for (const name of ckpt.keys()) {
      expect(ckpt.info(name).dtype).toBe('BF16');
      const actual = await ckpt.readFloat32(name);
      const want = await expected.readFloat32(`ckpt/${name}`);
      expect([name, Buffer.from(actual.buffer).equals(Buffer.from(want.buffer))]).toEqual([name, true]);
    }
  });

  it('readTensor gives a float32 tensor of the stored shape', async () => {
    const before = tf.memory().numTensors;
    const t = await ckpt.readTensor('model.layers.1.mlp.down_proj.weight');
    expect([t.dtype, t.shape]).toEqual(['float32', [8, 16]]); // [hidden, intermediate]
    t.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('names the checkpoint for an unknown tensor', () => {
    expect(() => ckpt.info('model.nope')).toThrow(/no tensor named "model.nope" in this checkpoint/);
  });
});

describe('single-file checkpoints', () => {
  it('opens model.safetensors, and prefers it over an index as transformers does', async () => {
    const dir = await shardedCopy();
    await fsp.copyFile(path.join(FIXTURES, 'dtypes.safetensors'), path.join(dir, SINGLE_FILE));
    const ckpt = await Checkpoint.open(dir);
    try {
      expect(ckpt.indexFile).toBeNull();
      expect(ckpt.keys()).toContain('f16');
      expect([...(await ckpt.readInt32('i32'))]).toEqual([-(2 ** 31), 2 ** 31 - 1, 0, -1, 123456789, -42]);
    } finally {
      await ckpt.close();
    }
  });
});

describe('broken checkpoints give a SafetensorsError naming the file', () => {
  it('missing directory, file instead of directory, empty directory', async () => {
    expect((await openError(path.join(tmp, 'absent'))).message).toMatch(/cannot open checkpoint directory/);
    expect((await openError(path.join(SHARDED, SHARD1))).message).toMatch(/not a directory/);
    const empty = await fsp.mkdtemp(path.join(tmp, 'empty-'));
    expect((await openError(empty)).message).toMatch(/no model.safetensors or model.safetensors.index.json/);
  });

  it('index that is not JSON or has no weight_map object', async () => {
    expect((await openError(await shardedCopy('{"weight_map": '))).message).toMatch(/index is not valid JSON/);
    expect((await openError(await shardedCopy({ metadata: {} }))).message).toMatch(/"weight_map" object/);
    expect((await openError(await shardedCopy({ weight_map: [SHARD1] }))).message).toMatch(/"weight_map" object/);
    expect((await openError(await shardedCopy('null'))).message).toMatch(/"weight_map" object/);
    const err = await openError(await shardedCopy({ weight_map: { w: 3 } }));
    expect([err.tensor, err.message]).toEqual(['w', expect.stringMatching(/must be a shard file name, found 3/)]);
  });

  it.each([
    ['a parent-directory path', `../${SHARD1}`],
    ['a nested escape', `sub/../../${SHARD1}`],
    ['an absolute path', path.join(SHARDED, SHARD1)],
    ['the directory itself', '.'],
  ])('shard given as %s is refused', async (_case, shard) => {
    const err = await openError(await shardedCopy({ weight_map: { 'lm_head.weight': shard } }));
    expect(err.file).toMatch(new RegExp(`${INDEX_FILE.replace(/\./g, '\\.')}$`));
    expect(err.message).toMatch(/is outside the model directory/);
  });

  it('missing shard', async () => {
    const dir = await shardedCopy();
    await fsp.rm(path.join(dir, SHARD2));
    const err = await openError(dir);
    expect(err.message).toMatch(new RegExp(`shard "${SHARD2}" named in weight_map does not exist`));
  });

  it('key missing from the shard the index names', async () => {
    const weightMap = { ...index.weight_map, 'lm_head.weight': SHARD1 }; // it lives in shard 2
    const dir = await shardedCopy({ weight_map: weightMap });
    const err = await openError(dir);
    expect([err.file, err.tensor]).toEqual([path.join(dir, SHARD1), 'lm_head.weight']);
    expect(err.message).toMatch(/assigned to this shard by .* but is not in it/);
  });

  it('a corrupt shard header names the shard', async () => {
    const dir = await shardedCopy();
    await fsp.writeFile(path.join(dir, SHARD2), Buffer.from([1, 2, 3]));
    const err = await openError(dir);
    expect(err.file).toBe(path.join(dir, SHARD2));
  });

  it('accepts a shard that is a symlink out of the directory (the Hugging Face cache layout)', async () => {
    const dir = await shardedCopy();
    const blobs = await fsp.mkdtemp(path.join(tmp, 'blobs-'));
    await fsp.rename(path.join(dir, SHARD2), path.join(blobs, 'abc123'));
    await fsp.symlink(path.join(blobs, 'abc123'), path.join(dir, SHARD2));
    const ckpt = await Checkpoint.open(dir);
    expect((await ckpt.readFloat32('model.norm.weight')).length).toBe(8);
    await ckpt.close();
  });

  it('reads after close are refused', async () => {
    const ckpt = await Checkpoint.open(SHARDED);
    await ckpt.close();
    await expect(ckpt.readFloat32('lm_head.weight')).rejects.toThrow(/file is closed/);
  });
});
