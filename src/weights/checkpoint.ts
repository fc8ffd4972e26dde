/**
 * A Hugging Face checkpoint directory: either one `model.safetensors` or shards listed by
 * `model.safetensors.index.json` ({"metadata": {...}, "weight_map": {tensor name: shard file}}).
 * Like transformers, a single `model.safetensors` wins when both are present.
 *
 * Every shard is opened (header only) and checked at open: it exists, stays inside the directory and
 * holds every tensor the index assigns to it. Only the file handles are kept; tensor data is read on
 * demand.
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { SafetensorsError } from '../errors';
import { SafetensorsFile, TensorInfo } from './safetensors';

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';
/** An index lists one line per tensor; 100 MB is far beyond any real one. */
const MAX_INDEX_BYTES = 100_000_000;

/** The message of an error, also for errors from another realm (which fail `instanceof Error`). */
function message(err: unknown): string {
  const text = (err as { message?: unknown } | null)?.message;
  return typeof text === 'string' ? text : String(err);
}

async function isFile(file: string): Promise<boolean> {
  return (await fsp.stat(file).catch(() => null))?.isFile() ?? false;
}

async function checkDirectory(dir: string): Promise<void> {
  const stat = await fsp.stat(dir).catch((err: unknown) => {
    throw new SafetensorsError(dir, `cannot open checkpoint directory: ${message(err)}`);
  });
  if (!stat.isDirectory()) throw new SafetensorsError(dir, 'checkpoint path is not a directory');
}

/** Reads model.safetensors.index.json and returns its weight_map (tensor name -> shard file name), validated. */
export async function readIndex(indexFile: string): Promise<Map<string, string>> {
  const { size } = await fsp.stat(indexFile);
  if (size > MAX_INDEX_BYTES) {
    throw new SafetensorsError(indexFile, `index is ${size} bytes, over the ${MAX_INDEX_BYTES}-byte limit`);
  }
  let json: unknown;
  try {
    json = JSON.parse(await fsp.readFile(indexFile, 'utf8'));
  } catch (err) {
    throw new SafetensorsError(indexFile, `index is not valid JSON: ${message(err)}`);
  }
  const weightMap = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    throw new SafetensorsError(indexFile, 'index must be a JSON object with a "weight_map" object');
  }
  const out = new Map<string, string>();
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard !== 'string' || shard === '') {
      const found = JSON.stringify(shard);
      throw new SafetensorsError(indexFile, `weight_map value must be a shard file name, found ${found}`, name);
    }
    out.set(name, shard);
  }
  return out;
}

/**
 * Resolves a shard name inside `dir`, refusing absolute paths and `..` escapes. The check is lexical on
 * purpose: in the Hugging Face cache every snapshot file is a symlink into ../../blobs, so following
 * links would reject all cached checkpoints.
 */
function resolveShard(dir: string, indexFile: string, shard: string): string {
  const root = path.resolve(dir);
  const resolved = path.resolve(root, shard);
  const rel = path.relative(root, resolved);
  if (path.isAbsolute(shard) || rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) {
    throw new SafetensorsError(indexFile, `shard "${shard}" is outside the model directory ${root}`);
  }
  return resolved;
}

async function openAll(files: string[]): Promise<SafetensorsFile[]> {
  const opened: SafetensorsFile[] = [];
  try {
    for (const file of files) opened.push(await SafetensorsFile.open(file));
    return opened;
  } catch (err) {
    await Promise.all(opened.map((f) => f.close()));
    throw err;
  }
}

export class Checkpoint {
  private constructor(
    readonly dir: string,
    /** The index file for a sharded checkpoint, null for a single model.safetensors. */
    readonly indexFile: string | null,
    private readonly files: readonly SafetensorsFile[],
    private readonly owners: ReadonlyMap<string, SafetensorsFile>,
  ) {}

  static async open(dir: string): Promise<Checkpoint> {
    await checkDirectory(dir);
    const single = path.join(dir, SINGLE_FILE);
    if (await isFile(single)) {
      const [file] = await openAll([single]);
      return new Checkpoint(dir, null, [file], new Map(file.keys().map((k) => [k, file])));
    }
    const indexFile = path.join(dir, INDEX_FILE);
    if (await isFile(indexFile)) return Checkpoint.openSharded(dir, indexFile);
    throw new SafetensorsError(dir, `no ${SINGLE_FILE} or ${INDEX_FILE} in this directory`);
  }

  private static async openSharded(dir: string, indexFile: string): Promise<Checkpoint> {
    const weightMap = await readIndex(indexFile);
    const shardNames = [...new Set(weightMap.values())].sort();
    const shardPaths = shardNames.map((s) => resolveShard(dir, indexFile, s));
    for (const [i, file] of shardPaths.entries()) {
      if (!(await isFile(file))) {
        throw new SafetensorsError(indexFile, `shard "${shardNames[i]}" named in weight_map does not exist (${file})`);
      }
    }
    const files = await openAll(shardPaths);
    const byName = new Map(shardNames.map((s, i) => [s, files[i]]));
    const owners = new Map<string, SafetensorsFile>();
    for (const [name, shard] of weightMap) {
      const file = byName.get(shard) as SafetensorsFile;
      if (!file.has(name)) {
        await Promise.all(files.map((f) => f.close()));
        const msg = `tensor is assigned to this shard by ${indexFile} but is not in it`;
        throw new SafetensorsError(file.path, msg, name);
      }
      owners.set(name, file);
    }
    return new Checkpoint(dir, indexFile, files, owners);
  }

  /** Tensor names, sorted. For a sharded checkpoint these are the index's keys. */
  keys(): string[] {
    return [...this.owners.keys()].sort();
  }

  has(name: string): boolean {
    return this.owners.has(name);
  }

  /** The file (shard) that holds `name`. */
  fileOf(name: string): SafetensorsFile {
    const file = this.owners.get(name);
    if (!file) {
      const where = this.indexFile ?? path.join(this.dir, SINGLE_FILE);
      throw new SafetensorsError(where, `no tensor named "${name}" in this checkpoint`, name);
    }
    return file;
  }

  info(name: string): TensorInfo {
    return this.fileOf(name).info(name);
  }

  readBytes(name: string): Promise<Uint8Array> {
    return this.fileOf(name).readBytes(name);
  }

  /** See SafetensorsFile.viewBytes: the bytes, mapped without a copy where possible. */
  viewBytes(name: string): ReturnType<SafetensorsFile['viewBytes']> {
    return this.fileOf(name).viewBytes(name);
  }

  readFloat32(name: string): Promise<Float32Array> {
    return this.fileOf(name).readFloat32(name);
  }

  readInt32(name: string): Promise<Int32Array> {
    return this.fileOf(name).readInt32(name);
  }

  readTensor(name: string): Promise<tf.Tensor> {
    return this.fileOf(name).readTensor(name);
  }

  /** Bytes of tensor data over all listed tensors. */
  get totalBytes(): number {
    let total = 0;
    for (const name of this.owners.keys()) total += this.info(name).byteLength;
    return total;
  }

  async close(): Promise<void> {
    await Promise.all(this.files.map((f) => f.close()));
  }
}
