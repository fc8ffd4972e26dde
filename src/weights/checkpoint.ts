/**
 * A Hugging Face checkpoint directory: either one `model.safetensors` or shards listed by
 * `model.safetensors.index.json` ({"metadata": {...}, "weight_map": {tensor name: shard file}}).
 * Like transformers, a single `model.safetensors` wins when both are present. The directory is a local one or any
 * other model folder (src/platform/files.ts: a URL read over HTTP).
 *
 * Every shard is opened (header only) and checked at open: it exists, stays inside the directory and
 * holds every tensor the index assigns to it. Only the open files are kept; tensor data is read on
 * demand.
 */
import * as tf from '@tensorflow/tfjs';
import { SafetensorsError } from '../errors';
import { platform } from '../platform';
import { ModelFiles, SINGLE_WEIGHTS, WEIGHTS_INDEX, errorText as message, innerPath } from '../platform/files';
import { SafetensorsFile, TensorInfo } from './safetensors';

export const SINGLE_FILE = SINGLE_WEIGHTS;
export const INDEX_FILE = WEIGHTS_INDEX;
/** An index lists one line per tensor; 100 MB is far beyond any real one. */
const MAX_INDEX_BYTES = 100_000_000;

async function localCheckpoint(dir: string): Promise<ModelFiles> {
  const isDirectory = await platform.isDirectory(dir).catch((err: unknown) => {
    throw new SafetensorsError(dir, `cannot open checkpoint directory: ${message(err)}`);
  });
  if (!isDirectory) throw new SafetensorsError(dir, 'checkpoint path is not a directory');
  return platform.localFiles(dir);
}

/** An index's weight_map (tensor name -> shard file name), validated. `indexFile` names it in errors. */
export function parseIndex(text: string, indexFile: string): Map<string, string> {
  if (text.length > MAX_INDEX_BYTES) {
    throw new SafetensorsError(indexFile, `index is ${text.length} bytes, over the ${MAX_INDEX_BYTES}-byte limit`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
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

/** Reads model.safetensors.index.json (a path in Node) and returns its weight_map, validated. */
export async function readIndex(indexFile: string): Promise<Map<string, string>> {
  return parseIndex(await platform.readTextFile(indexFile), indexFile);
}

async function openAll(files: ModelFiles, names: string[], indexFile: string): Promise<SafetensorsFile[]> {
  const opened: SafetensorsFile[] = [];
  try {
    for (const name of names) {
      const source = await files.open(name).catch((err: unknown) => {
        throw new SafetensorsError(files.where(name), `cannot open: ${message(err)}`);
      });
      if (!source) throw new SafetensorsError(indexFile, `shard "${name}" named in weight_map does not exist (${files.where(name)})`);
      opened.push(await SafetensorsFile.fromSource(source));
    }
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

  /** A local directory (Node) or any model folder (src/platform/files.ts). */
  static async open(dir: string | ModelFiles): Promise<Checkpoint> {
    const files = typeof dir === 'string' ? await localCheckpoint(dir) : dir;
    const single = await files.open(SINGLE_FILE).catch((err: unknown) => {
      throw new SafetensorsError(files.where(SINGLE_FILE), `cannot open: ${message(err)}`);
    });
    if (single) {
      const file = await SafetensorsFile.fromSource(single);
      return new Checkpoint(files.location, null, [file], new Map(file.keys().map((k) => [k, file])));
    }
    const indexText = files.text(INDEX_FILE);
    if (indexText !== undefined) return Checkpoint.openSharded(files, files.where(INDEX_FILE), indexText);
    throw new SafetensorsError(files.location, `no ${SINGLE_FILE} or ${INDEX_FILE} in this directory`);
  }

  private static async openSharded(dir: ModelFiles, indexFile: string, indexText: string): Promise<Checkpoint> {
    const weightMap = parseIndex(indexText, indexFile);
    const shardNames = [...new Set(weightMap.values())].sort();
    const inner = shardNames.map((shard) => {
      const name = innerPath(shard);
      if (name === null) throw new SafetensorsError(indexFile, `shard "${shard}" is outside the model directory ${dir.location}`);
      return name;
    });
    const files = await openAll(dir, inner, indexFile);
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
    return new Checkpoint(dir.location, indexFile, files, owners);
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
      const where = this.indexFile ?? this.files[0]?.path ?? this.dir;
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
