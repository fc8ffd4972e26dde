/**
 * PyTorch .bin checkpoints (the original Video-LLaVA / LanguageBind format) against torch.load of the same files
 * (reference/gen_torch_bin.py): every tensor equal exactly (the decoders widen without rounding, float64 rounds to
 * nearest as torch's .float() does).
 */
import { promises as fsp } from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { SafetensorsError } from '../../src/errors';
import { TorchCheckpoint, TorchCheckpointFile } from '../../src/weights/torch_checkpoint';
import { readZipDirectory } from '../../src/weights/zip';
import { FIXTURES, diff } from '../helpers/fixtures';
import { SafetensorsFile } from '../../src/weights/safetensors';

const DIR = path.join(FIXTURES, 'torch_bin');

describe('TorchCheckpointFile', () => {
  test('reads every tensor of a torch.save state dict exactly as torch.load does', async () => {
    const file = await TorchCheckpointFile.open(path.join(DIR, 'state_dict.bin'));
    const expected = await SafetensorsFile.open(path.join(DIR, 'expected.safetensors'));
    try {
      expect(file.keys()).toEqual(expected.keys());
      const dtypes = Object.fromEntries(expected.metadata.dtypes.split(',').map((e) => e.split(':')));
      const torchNames: Record<string, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16', F64: 'float64', I64: 'int64', BOOL: 'bool' };
      for (const key of file.keys()) {
        expect(torchNames[file.info(key).dtype]).toBe(dtypes[key]);
        const a = await file.readTensor(key);
        const b = await expected.readTensor(key);
        expect(key === 'scalar' ? [1] : a.shape).toEqual(b.shape); // numpy stores the 0-d expected value as [1]
        expect(Array.from(a.dataSync())).toEqual(Array.from(b.dataSync())); // exact, incl. the strided and shared views
        tf.dispose([a, b]);
      }
      expect(file.info('transposed').shape).toEqual([6, 4]);
      expect(file.info('scalar').shape).toEqual([]);
    } finally {
      await file.close();
      await expected.close();
    }
  });

  test('refuses what is not a plain state dict, the legacy format, and pickles naming other globals', async () => {
    await expect(TorchCheckpointFile.open(path.join(DIR, 'not_a_state_dict.bin'))).rejects.toThrow(/entry "step" is not a tensor/);
    await expect(TorchCheckpointFile.open(path.join(DIR, 'legacy.bin'))).rejects.toThrow(/legacy pre-1.6 format/);
    const evil = TorchCheckpointFile.open(path.join(DIR, 'evil.bin'));
    await expect(evil).rejects.toThrow(SafetensorsError);
    await expect(TorchCheckpointFile.open(path.join(DIR, 'evil.bin'))).rejects.toThrow(/refusing global os\.system/);
    await expect(TorchCheckpointFile.open(path.join(DIR, 'nope.bin'))).rejects.toThrow(/cannot open/);
  });

  test('ZIP64 central directories are read (checkpoints over 4 GiB use them)', async () => {
    // A stored member "a/data.pkl" whose sizes and offset live in the zip64 extra field and a zip64 end record.
    const name = Buffer.from('a/x');
    const body = Buffer.from('hello');
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(name.length, 26);
    const extra = Buffer.alloc(4 + 24);
    extra.writeUInt16LE(1, 0);
    extra.writeUInt16LE(24, 2);
    extra.writeBigUInt64LE(5n, 4);
    extra.writeBigUInt64LE(5n, 12);
    extra.writeBigUInt64LE(0n, 20);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt32LE(0xffffffff, 20);
    central.writeUInt32LE(0xffffffff, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt16LE(extra.length, 30);
    central.writeUInt32LE(0xffffffff, 42);
    const cdOffset = local.length + name.length + body.length;
    const cd = Buffer.concat([central, name, extra]);
    const z64 = Buffer.alloc(56);
    z64.writeUInt32LE(0x06064b50, 0);
    z64.writeBigUInt64LE(1n, 24);
    z64.writeBigUInt64LE(1n, 32);
    z64.writeBigUInt64LE(BigInt(cd.length), 40);
    z64.writeBigUInt64LE(BigInt(cdOffset), 48);
    const locator = Buffer.alloc(20);
    locator.writeUInt32LE(0x07064b50, 0);
    locator.writeBigUInt64LE(BigInt(cdOffset + cd.length), 8);
    const eocd = Buffer.alloc(22);
    eocd.writeUInt32LE(0x06054b50, 0);
    eocd.writeUInt16LE(0xffff, 10);
    eocd.writeUInt32LE(0xffffffff, 12);
    eocd.writeUInt32LE(0xffffffff, 16);
    const bytes = Buffer.concat([local, name, body, cd, z64, locator, eocd]);
    const tmp = path.join(await fsp.mkdtemp(path.join(os.tmpdir(), 'zip64-')), 'x.zip');
    await fsp.writeFile(tmp, bytes);
    const handle = await fsp.open(tmp, 'r');
    try {
      const members = await readZipDirectory(handle, tmp, bytes.length);
      expect(members.get('a/x')).toEqual({ name: 'a/x', method: 0, size: 5, compressedSize: 5, headerOffset: 0 });
    } finally {
      await handle.close();
    }
  });
});

describe('TorchCheckpoint (directories)', () => {
  test('shards of pytorch_model.bin.index.json: every key, float16 widened exactly', async () => {
    const ckpt = await TorchCheckpoint.open(path.join(FIXTURES, 'original', 'Video-LLaVA'));
    const index = JSON.parse(await fsp.readFile(path.join(FIXTURES, 'original', 'Video-LLaVA', 'pytorch_model.bin.index.json'), 'utf8'));
    try {
      expect(ckpt.keys()).toEqual(Object.keys(index.weight_map).sort());
      expect(ckpt.info('lm_head.weight')).toMatchObject({ dtype: 'F16', shape: [601, 64] });
      // The embedded float16 tower copy equals the tower repository's float32 weights (exactly representable).
      const tower = await TorchCheckpoint.open(path.join(FIXTURES, 'original', 'LanguageBind_Video_merge'));
      const a = await ckpt.readTensor('model.video_tower.video_tower.encoder.layers.1.temporal_attn.q_proj.weight');
      const b = await tower.readTensor('vision_model.encoder.layers.1.temporal_attn.q_proj.weight');
      expect(diff(a, b).abs).toBe(0);
      tf.dispose([a, b]);
      await tower.close();
    } finally {
      await ckpt.close();
    }
  });

  test('a directory without torch weights is a typed error naming it', async () => {
    await expect(TorchCheckpoint.open(DIR)).rejects.toThrow(/no pytorch_model\.bin or pytorch_model\.bin\.index\.json/);
  });
});
