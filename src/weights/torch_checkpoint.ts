/**
 * PyTorch checkpoints as the original Video-LLaVA and LanguageBind repositories publish them:
 * `pytorch_model.bin`, or shards listed by `pytorch_model.bin.index.json` (same index format as safetensors).
 * Each file is a torch.save zip; its pickle is read by the restricted reader of ./torch_pickle.ts, tensors are
 * read on demand from their storage members. Older non-zip torch.save files are refused with a clear error.
 */
import { promises as fsp } from 'fs';
import type { FileHandle } from 'fs/promises';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { SafetensorsError } from '../errors';
import { readIndex } from './checkpoint';
import { DType, decodeFloat, decodeInt32, dtypeSize, isFloatDType } from './dtype';
import { TorchTensorRef, unpickle } from './torch_pickle';
import { ZipMember, memberDataOffset, readZipDirectory } from './zip';

export const TORCH_SINGLE_FILE = 'pytorch_model.bin';
export const TORCH_INDEX_FILE = 'pytorch_model.bin.index.json';

export interface TorchTensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  byteLength: number;
}

function contiguousStrides(shape: number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

export class TorchCheckpointFile {
  private handle: FileHandle | null;

  private constructor(
    readonly path: string,
    handle: FileHandle,
    private readonly prefix: string,
    private readonly members: Map<string, ZipMember>,
    private readonly tensors: Map<string, TorchTensorRef>,
  ) {
    this.handle = handle;
  }

  static async open(file: string): Promise<TorchCheckpointFile> {
    let handle: FileHandle;
    try {
      handle = await fsp.open(file, 'r');
    } catch (err) {
      throw new SafetensorsError(file, `cannot open: ${(err as Error).message}`);
    }
    try {
      const { size } = await handle.stat();
      const magic = Buffer.alloc(4);
      await handle.read(magic, 0, 4, 0);
      if (magic.readUInt32LE(0) !== 0x04034b50) {
        throw new SafetensorsError(file, 'not a zip-format torch.save file (the legacy pre-1.6 format is not supported: re-save it with torch.save in a recent PyTorch)');
      }
      const members = await readZipDirectory(handle, file, size);
      const pkl = [...members.keys()].find((n) => n.endsWith('/data.pkl') && n.split('/').length === 2);
      if (!pkl) throw new SafetensorsError(file, 'no data.pkl in this torch checkpoint');
      const member = members.get(pkl)!;
      const offset = await memberDataOffset(handle, file, member);
      const bytes = Buffer.alloc(member.size);
      await handle.read(bytes, 0, member.size, offset);
      const tensors = stateDict(unpickle(bytes, file), file);
      return new TorchCheckpointFile(file, handle, pkl.slice(0, -'data.pkl'.length), members, tensors);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  keys(): string[] {
    return [...this.tensors.keys()].sort();
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  private ref(name: string): TorchTensorRef {
    const ref = this.tensors.get(name);
    if (!ref) throw new SafetensorsError(this.path, `no tensor named "${name}" in this file`, name);
    return ref;
  }

  info(name: string): TorchTensorInfo {
    const { storage, shape } = this.ref(name);
    const count = shape.reduce((a, b) => a * b, 1);
    return { name, dtype: storage.dtype, shape: [...shape], byteLength: count * dtypeSize(storage.dtype) };
  }

  /** The tensor's elements in row-major order, as little-endian bytes of its dtype. */
  async readBytes(name: string): Promise<Uint8Array> {
    const { storage, offset, shape, strides } = this.ref(name);
    if (!this.handle) throw new SafetensorsError(this.path, 'file is closed', name);
    const member = this.members.get(`${this.prefix}data/${storage.key}`);
    if (!member) throw new SafetensorsError(this.path, `storage ${storage.key} of this tensor is missing from the archive`, name);
    const size = dtypeSize(storage.dtype);
    const count = shape.reduce((a, b) => a * b, 1);
    const contiguous = shape.every((d, i) => d === 1 || strides[i] === contiguousStrides(shape)[i]);
    const span = contiguous ? count : 1 + shape.reduce((s, d, i) => s + (d - 1) * strides[i], 0);
    if (count > 0 && (offset + span) * size > member.size) throw new SafetensorsError(this.path, 'tensor extends past its storage', name);
    const start = (await memberDataOffset(this.handle, this.path, member)) + offset * size;
    const raw = Buffer.alloc(span * size);
    await this.handle.read(raw, 0, raw.length, start);
    return contiguous ? raw : gatherStrided(raw, shape, strides, size);
  }

  /** Float dtypes become a float32 tensor, integer and BOOL dtypes an int32 tensor. Caller disposes it. */
  async readTensor(name: string): Promise<tf.Tensor> {
    const { dtype, shape } = this.info(name);
    const bytes = await this.readBytes(name);
    const ref = { file: this.path, tensor: name };
    if (isFloatDType(dtype)) return tf.tensor(decodeFloat(dtype, bytes, ref), shape, 'float32');
    return tf.tensor(decodeInt32(dtype, bytes, ref), shape, 'int32');
  }

  async close(): Promise<void> {
    const handle = this.handle;
    this.handle = null;
    if (handle) await handle.close();
  }
}

/** A non-contiguous view copied into row-major order. */
function gatherStrided(raw: Buffer, shape: number[], strides: number[], size: number): Uint8Array {
  const count = shape.reduce((a, b) => a * b, 1);
  const out = new Uint8Array(count * size);
  const index = new Array<number>(shape.length).fill(0);
  for (let i = 0; i < count; i++) {
    const src = index.reduce((s, k, d) => s + k * strides[d], 0) * size;
    out.set(raw.subarray(src, src + size), i * size);
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++index[d] < shape[d]) break;
      index[d] = 0;
    }
  }
  return out;
}

function stateDict(obj: unknown, file: string): Map<string, TorchTensorRef> {
  if (!(obj instanceof Map)) throw new SafetensorsError(file, 'the pickle is not a state dict (a dict of tensors)');
  const out = new Map<string, TorchTensorRef>();
  for (const [key, value] of obj) {
    if (typeof key !== 'string' || !value || typeof value !== 'object' || !('storage' in value)) {
      throw new SafetensorsError(file, `entry ${JSON.stringify(key)} is not a tensor; only plain state dicts are read`);
    }
    out.set(key, value as TorchTensorRef);
  }
  return out;
}

/** A directory's pytorch_model.bin or its shards (pytorch_model.bin.index.json). */
export class TorchCheckpoint {
  private constructor(
    readonly dir: string,
    private readonly files: TorchCheckpointFile[],
    private readonly owners: Map<string, TorchCheckpointFile>,
  ) {}

  static async open(dir: string): Promise<TorchCheckpoint> {
    const single = path.join(dir, TORCH_SINGLE_FILE);
    const indexFile = path.join(dir, TORCH_INDEX_FILE);
    let shardNames: string[];
    let weightMap: Map<string, string> | null = null;
    if (await exists(single)) {
      shardNames = [TORCH_SINGLE_FILE];
    } else if (await exists(indexFile)) {
      weightMap = await readIndex(indexFile);
      shardNames = [...new Set(weightMap.values())].sort();
      for (const s of shardNames) {
        if (path.isAbsolute(s) || s.split(/[\\/]/).includes('..')) throw new SafetensorsError(indexFile, `shard "${s}" is outside the model directory`);
      }
    } else {
      throw new SafetensorsError(dir, `no ${TORCH_SINGLE_FILE} or ${TORCH_INDEX_FILE} in this directory`);
    }
    const files: TorchCheckpointFile[] = [];
    try {
      for (const s of shardNames) files.push(await TorchCheckpointFile.open(path.join(dir, s)));
    } catch (err) {
      await Promise.all(files.map((f) => f.close()));
      throw err;
    }
    const owners = new Map<string, TorchCheckpointFile>();
    for (const f of files) for (const k of f.keys()) owners.set(k, f);
    if (weightMap) {
      for (const [name, shard] of weightMap) {
        if (!owners.get(name)?.path.endsWith(shard)) {
          await Promise.all(files.map((f) => f.close()));
          throw new SafetensorsError(indexFile, `tensor is assigned to ${shard} by the index but is not in it`, name);
        }
      }
    }
    return new TorchCheckpoint(dir, files, owners);
  }

  keys(): string[] {
    return [...this.owners.keys()].sort();
  }

  has(name: string): boolean {
    return this.owners.has(name);
  }

  private fileOf(name: string): TorchCheckpointFile {
    const f = this.owners.get(name);
    if (!f) throw new SafetensorsError(this.dir, `no tensor named "${name}" in this checkpoint`, name);
    return f;
  }

  info(name: string): TorchTensorInfo {
    return this.fileOf(name).info(name);
  }

  readTensor(name: string): Promise<tf.Tensor> {
    return this.fileOf(name).readTensor(name);
  }

  /** The tensor's elements in row-major order, as little-endian bytes of its dtype. */
  readBytes(name: string): Promise<Uint8Array> {
    return this.fileOf(name).readBytes(name);
  }

  async close(): Promise<void> {
    await Promise.all(this.files.map((f) => f.close()));
  }
}

async function exists(file: string): Promise<boolean> {
  return (await fsp.stat(file).catch(() => null))?.isFile() ?? false;
}
