/**
 * `quantization_config` of config.json for bitsandbytes checkpoints: transformers' BitsAndBytesConfig
 * (5.24), every field with its default, parsed as `AutoQuantizationConfig.from_dict` + `post_init` accept it
 * and written back as its `to_dict()` (which save_pretrained stores with sorted keys).
 */
import { ConfigError } from '../errors';
import { FieldReader, Json } from '../models/config_fields';
import { PyFloat } from '../training/json';
import type { FourBitType } from './codes';
import type { QuantStorage } from './bnb_tensors';

/** torch dtype names accepted for `bnb_4bit_compute_dtype`. */
export type ComputeDtype = 'float32' | 'float16' | 'bfloat16' | 'float64';

export interface BitsAndBytesConfig {
  quant_method: 'bitsandbytes';
  /** LLM.int8(): 8-bit weights with row-wise scales (Linear8bitLt). Default false. */
  load_in_8bit: boolean;
  /** NF4/FP4 weights (Linear4bit). Default false. Exactly one of the two is true in a checkpoint. */
  load_in_4bit: boolean;
  /** Activation magnitude from which LLM.int8() keeps a column in 16 bits. Default 6.0. */
  llm_int8_threshold: number;
  /**
   * Module name patterns kept unquantized (regex / prefix / suffix, see modules.ts). Default null, which
   * means transformers' own choice (the output embedding `lm_head`); a list replaces that choice.
   */
  llm_int8_skip_modules: string[] | null;
  /** Default false. */
  llm_int8_enable_fp32_cpu_offload: boolean;
  /** Default false. */
  llm_int8_has_fp16_weight: boolean;
  /** dtype the 4-bit matmul runs in. Default float32. */
  bnb_4bit_compute_dtype: ComputeDtype;
  /** Default "fp4" (transformers' default; Video-LLaVA's documentation uses "nf4"). */
  bnb_4bit_quant_type: FourBitType;
  /** Double quantization of the block scales. Default false. */
  bnb_4bit_use_double_quant: boolean;
  /** dtype the packed bytes are saved as. Default uint8. */
  bnb_4bit_quant_storage: QuantStorage;
}

export const BITS_AND_BYTES_DEFAULTS: BitsAndBytesConfig = {
  quant_method: 'bitsandbytes',
  load_in_8bit: false,
  load_in_4bit: false,
  llm_int8_threshold: 6.0,
  llm_int8_skip_modules: null,
  llm_int8_enable_fp32_cpu_offload: false,
  llm_int8_has_fp16_weight: false,
  bnb_4bit_compute_dtype: 'float32',
  bnb_4bit_quant_type: 'fp4',
  bnb_4bit_use_double_quant: false,
  bnb_4bit_quant_storage: 'uint8',
};

const COMPUTE_DTYPES: Record<string, ComputeDtype> = {
  float32: 'float32', float: 'float32', float16: 'float16', half: 'float16', bfloat16: 'bfloat16',
  float64: 'float64', double: 'float64',
};
const STORAGES: readonly QuantStorage[] = ['float16', 'float32', 'int8', 'uint8', 'float64', 'bfloat16'];

/**
 * Parses `quantization_config` (the object, not the whole config.json). Unknown keys are ignored, as
 * transformers does; `field` names in errors carry the `quantization_config.` prefix.
 */
export function parseBitsAndBytesConfig(raw: Json, file?: string): BitsAndBytesConfig {
  const prefix = 'quantization_config.';
  const f = new FieldReader(raw, prefix, file);
  const d = BITS_AND_BYTES_DEFAULTS;
  const load4 = f.bool('load_in_4bit', d.load_in_4bit);
  const load8 = f.bool('load_in_8bit', d.load_in_8bit);
  if (load4 && load8) {
    throw new ConfigError(`${prefix}load_in_4bit`, 'load_in_4bit and load_in_8bit are both true; only one can be', file);
  }
  const method = f.has('quant_method') ? f.str('quant_method', 'bitsandbytes') : 'bitsandbytes';
  if (method !== 'bitsandbytes') {
    throw new ConfigError(`${prefix}quant_method`, `"${method}" is not a bitsandbytes quantization`, file);
  }
  if (!load4 && !load8) {
    throw new ConfigError(`${prefix}load_in_4bit`, 'neither load_in_4bit nor load_in_8bit is true: nothing is quantized', file);
  }
  const skip = f.raw_('llm_int8_skip_modules');
  if (skip !== undefined && skip !== null && !(Array.isArray(skip) && skip.every((s) => typeof s === 'string'))) {
    throw new ConfigError(`${prefix}llm_int8_skip_modules`, `expected a list of strings or null, found ${JSON.stringify(skip)}`, file);
  }
  const computeName = f.str('bnb_4bit_compute_dtype', d.bnb_4bit_compute_dtype as string);
  const compute = COMPUTE_DTYPES[computeName];
  if (!compute) {
    throw new ConfigError(`${prefix}bnb_4bit_compute_dtype`, `expected one of ${Object.keys(COMPUTE_DTYPES).join(', ')}, found "${computeName}"`, file);
  }
  return {
    quant_method: 'bitsandbytes',
    load_in_8bit: load8,
    load_in_4bit: load4,
    llm_int8_threshold: f.num('llm_int8_threshold', d.llm_int8_threshold),
    llm_int8_skip_modules: Array.isArray(skip) ? [...(skip as string[])] : null,
    llm_int8_enable_fp32_cpu_offload: f.bool('llm_int8_enable_fp32_cpu_offload', d.llm_int8_enable_fp32_cpu_offload),
    llm_int8_has_fp16_weight: f.bool('llm_int8_has_fp16_weight', d.llm_int8_has_fp16_weight),
    bnb_4bit_compute_dtype: compute,
    bnb_4bit_quant_type: f.str('bnb_4bit_quant_type', d.bnb_4bit_quant_type, ['fp4', 'nf4'] as const),
    bnb_4bit_use_double_quant: f.bool('bnb_4bit_use_double_quant', d.bnb_4bit_use_double_quant),
    bnb_4bit_quant_storage: f.str('bnb_4bit_quant_storage', d.bnb_4bit_quant_storage, STORAGES),
  };
}

/**
 * BitsAndBytesConfig.to_dict() with sorted keys: what save_pretrained writes as `quantization_config`
 * (including the private `_load_in_4bit` / `_load_in_8bit` copies). The threshold is a PyFloat so that
 * toPythonJson (training/json.ts) writes it as Python does (`6.0`).
 */
export function bitsAndBytesConfigToJson(cfg: BitsAndBytesConfig): Json {
  const out: Json = {
    _load_in_4bit: cfg.load_in_4bit,
    _load_in_8bit: cfg.load_in_8bit,
    bnb_4bit_compute_dtype: cfg.bnb_4bit_compute_dtype,
    bnb_4bit_quant_storage: cfg.bnb_4bit_quant_storage,
    bnb_4bit_quant_type: cfg.bnb_4bit_quant_type,
    bnb_4bit_use_double_quant: cfg.bnb_4bit_use_double_quant,
    llm_int8_enable_fp32_cpu_offload: cfg.llm_int8_enable_fp32_cpu_offload,
    llm_int8_has_fp16_weight: cfg.llm_int8_has_fp16_weight,
    llm_int8_skip_modules: cfg.llm_int8_skip_modules,
    llm_int8_threshold: new PyFloat(cfg.llm_int8_threshold),
    load_in_4bit: cfg.load_in_4bit,
    load_in_8bit: cfg.load_in_8bit,
    quant_method: cfg.quant_method,
  };
  return out;
}

/** The 4-bit method name transformers reports (`quantization_method()`): "llm_int8", "nf4" or "fp4". */
export function quantizationMethod(cfg: BitsAndBytesConfig): 'llm_int8' | FourBitType {
  return cfg.load_in_8bit ? 'llm_int8' : cfg.bnb_4bit_quant_type;
}
