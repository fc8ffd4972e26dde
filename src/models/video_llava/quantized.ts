/**
 * Loading with bitsandbytes quantization, as transformers does it: every Linear of both towers, the projector and the
 * decoder becomes 4-bit (NF4/FP4) or 8-bit unless `llm_int8_skip_modules` (default: lm_head) keeps it; either quantized
 * at load (the `quantization` option, like BitsAndBytesConfig in from_pretrained) or read pre-quantized from a
 * checkpoint transformers + bitsandbytes saved (`quantization_config` in config.json, `weight` packed with
 * `weight.absmax`, `weight.quant_map`, … or `weight` int8 with `SCB`).
 */
import { ConfigError, InputError } from '../../errors';
import { Linear } from '../../layers/linear';
import { Module } from '../../layers/module';
import type { ComputeDType } from '../../native/codes';
import { BITS_AND_BYTES_DEFAULTS, BitsAndBytesConfig, parseBitsAndBytesConfig } from '../../quantization/config';
import { FOUR_BIT_TYPES, FourBitType } from '../../quantization/codes';
import { FOUR_BIT_BLOCK_SIZES, quantize4bit, quantize4bitBFloat16 } from '../../quantization/fourbit';
import { QUANT_STATE_PREFIX, QuantStorage, RawTensor, fourBitFromTensors, int8FromTensors, quantizedFormat } from '../../quantization/bnb_tensors';
import { quantizeInt8, quantizeInt8BFloat16 } from '../../quantization/int8';
import { quantizedModules } from '../../quantization/modules';
import { WeightDtype } from '../../quantization/weight_dtype';
import { FourBitWeight, Int8Weight } from '../../quantization/weights';
import { Checkpoint } from '../../weights/checkpoint';
import { uint16Words } from '../../weights/dtype';
import { Json } from '../config_fields';
import { StoredWeight } from '../../weights/stored';

/** The `quantization` load option: BitsAndBytesConfig's fields under TypeScript names. */
export interface QuantizationOptions {
  /** 4 (load_in_4bit) or 8 (load_in_8bit). */
  bits: 4 | 8;
  /** bnb_4bit_quant_type; default 'fp4', transformers' default (Video-LLaVA's documentation uses 'nf4'). */
  type?: FourBitType;
  /** Values per 4-bit block scale (bitsandbytes' blocksize); default 64. */
  blockSize?: number;
  /** bnb_4bit_use_double_quant; default false. */
  doubleQuant?: boolean;
  /** bnb_4bit_compute_dtype: float32 (default) or bfloat16. */
  computeDtype?: ComputeDType;
  /** llm_int8_skip_modules: module name patterns kept unquantized; default ['lm_head']. */
  skipModules?: string[];
  /** bnb_4bit_quant_storage: how the packed bytes are saved; default uint8. */
  storage?: QuantStorage;
}

export interface Quantization {
  config: BitsAndBytesConfig;
  blockSize: number;
  /** Read from the checkpoint as saved, rather than quantized at load. */
  preQuantized: boolean;
  /** Module paths (`model.language_model.layers.0.self_attn.q_proj`) whose weight is quantized. */
  modules: Set<string>;
}

/** Suffixes a quantized Linear saves next to `weight` (relative to the module). */
const AUX = ['weight.absmax', 'weight.quant_map', 'weight.nested_absmax', 'weight.nested_quant_map', `${QUANT_STATE_PREFIX}nf4`, `${QUANT_STATE_PREFIX}fp4`, 'SCB', 'weight_format'];

/** `<module>.weight.absmax` → ['<module>', 'weight.absmax']; null for any other key. */
export function splitAuxKey(key: string): [string, string] | null {
  for (const suffix of AUX) if (key.endsWith(`.${suffix}`)) return [key.slice(0, -suffix.length - 1), suffix];
  return null;
}

function linearPaths(model: Module): string[] {
  return [...model.namedModules()].filter(([path, m]) => m instanceof Linear && !/\.lora_[AB]$/.test(path)).map(([path]) => path);
}

function configFromOptions(o: QuantizationOptions): BitsAndBytesConfig {
  if (o.bits !== 4 && o.bits !== 8) throw new InputError('quantization.bits', `expected 4 or 8, found ${JSON.stringify(o.bits)}`);
  if (o.type !== undefined && !FOUR_BIT_TYPES.includes(o.type)) throw new InputError('quantization.type', `expected nf4 or fp4, found "${o.type}"`);
  if (o.blockSize !== undefined && !FOUR_BIT_BLOCK_SIZES.includes(o.blockSize)) {
    throw new InputError('quantization.blockSize', `expected one of ${FOUR_BIT_BLOCK_SIZES.join(', ')}, found ${o.blockSize}`);
  }
  if (o.computeDtype !== undefined && o.computeDtype !== 'float32' && o.computeDtype !== 'bfloat16') {
    throw new InputError('quantization.computeDtype', `expected float32 or bfloat16, found "${o.computeDtype}"`);
  }
  const d = BITS_AND_BYTES_DEFAULTS;
  return {
    ...d,
    load_in_4bit: o.bits === 4,
    load_in_8bit: o.bits === 8,
    bnb_4bit_quant_type: o.type ?? d.bnb_4bit_quant_type,
    bnb_4bit_use_double_quant: o.doubleQuant ?? d.bnb_4bit_use_double_quant,
    bnb_4bit_compute_dtype: o.computeDtype ?? d.bnb_4bit_compute_dtype,
    bnb_4bit_quant_storage: o.storage ?? d.bnb_4bit_quant_storage,
    llm_int8_skip_modules: o.skipModules ?? null,
  };
}

/** The quantization of this load: from the option, or from config.json's `quantization_config`; null for none. */
export function resolveQuantization(model: Module, option: QuantizationOptions | undefined, rawConfig: Json, file: string): Quantization | null {
  const saved = (rawConfig as { quantization_config?: Json } | null)?.quantization_config;
  if (saved !== undefined && saved !== null) {
    if (option) throw new InputError('quantization', `${file} is already quantized (quantization_config); load it without the quantization option`);
    const config = parseBitsAndBytesConfig(saved, file);
    return { config, blockSize: 64, preQuantized: true, modules: new Set(quantizedModules(linearPaths(model), config)) };
  }
  if (!option) return null;
  const config = configFromOptions(option);
  return { config, blockSize: option.blockSize ?? 64, preQuantized: false, modules: new Set(quantizedModules(linearPaths(model), config)) };
}

/** The compute dtype products with quantized weights use (float16 compute, a GPU choice, runs as float32 here). */
export function quantizedCompute(q: Quantization, fallback: ComputeDType): ComputeDType {
  const c = q.config.bnb_4bit_compute_dtype;
  return c === 'bfloat16' ? 'bfloat16' : c === 'float32' ? 'float32' : fallback;
}

const DTYPES: Record<string, WeightDtype> = { BF16: 'bfloat16', F16: 'float16', F32: 'float32' };

/** A Linear weight quantized as `q` says: read as saved, or read in its dtype and quantized (bit-identical to bitsandbytes). */
export async function readQuantizedWeight(
  checkpoint: Checkpoint,
  key: string,
  q: Quantization,
  aux: ReadonlyMap<string, string[]>,
  compute: ComputeDType,
): Promise<StoredWeight> {
  const module = key.slice(0, -'.weight'.length);
  let weight: StoredWeight;
  if (q.preQuantized) {
    const tensors: Record<string, RawTensor> = {};
    for (const name of ['weight', ...(aux.get(module) ?? [])]) {
      const full = name === 'weight' ? key : `${module}.${name}`;
      const info = checkpoint.info(full);
      tensors[name] = { dtype: info.dtype, shape: [...info.shape], data: await checkpoint.readBytes(full) };
    }
    const src = { module, file: checkpoint.fileOf(key).path };
    const format = quantizedFormat(Object.keys(tensors));
    if (format === '4bit') weight = new FourBitWeight(fourBitFromTensors(tensors, src), q.config.bnb_4bit_quant_storage, key);
    else if (format === '8bit') weight = new Int8Weight(int8FromTensors(tensors, src), key);
    else throw new ConfigError('quantization_config', `${key} should be quantized (${q.config.load_in_4bit ? '4-bit' : '8-bit'}) but the checkpoint stores it plain`, src.file);
  } else {
    const info = checkpoint.info(key);
    const dtype = DTYPES[info.dtype];
    if (!dtype) throw new ConfigError('quantization', `${key} is stored as ${info.dtype}; only float32/bfloat16/float16 weights can be quantized`);
    const shape = [...info.shape];
    const fourBit = { quantType: q.config.bnb_4bit_quant_type, blockSize: q.blockSize, doubleQuant: q.config.bnb_4bit_use_double_quant, name: key };
    if (dtype === 'bfloat16') {
      // the bfloat16 bits straight to the quantizer: no float32 copy of the weight
      const bits = uint16Words(await checkpoint.readBytes(key), { file: checkpoint.fileOf(key).path, tensor: key });
      weight = q.config.load_in_4bit
        ? new FourBitWeight(quantize4bitBFloat16(bits, shape, fourBit), q.config.bnb_4bit_quant_storage, key)
        : new Int8Weight(quantizeInt8BFloat16(bits, shape, { name: key }), key);
    } else {
      const values = await checkpoint.readFloat32(key);
      weight = q.config.load_in_4bit
        ? new FourBitWeight(quantize4bit(values, shape, { ...fourBit, dtype }), q.config.bnb_4bit_quant_storage, key)
        : new Int8Weight(quantizeInt8(values, shape, { dtype, name: key }), key);
    }
  }
  weight.compute = compute;
  return weight;
}
