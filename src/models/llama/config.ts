import { FieldReader, Json } from '../config_fields';
import { ConfigError } from '../../errors';
import { RopeParameters } from '../../layers/rope';

/** Llama decoder settings; defaults are LlamaConfig's (transformers 5.24). */
export interface LlamaConfig {
  vocab_size: number; // 32000
  hidden_size: number; // 4096
  intermediate_size: number; // 11008
  num_hidden_layers: number; // 32
  num_attention_heads: number; // 32
  num_key_value_heads: number; // null → num_attention_heads
  head_dim: number; // null → hidden_size / num_attention_heads
  hidden_act: string; // "silu"
  max_position_embeddings: number; // 2048
  rms_norm_eps: number; // 1e-6
  rope: RopeParameters; // from rope_parameters (v5) or rope_theta + rope_scaling (older files)
  attention_bias: boolean; // false
  mlp_bias: boolean; // false
  tie_word_embeddings: boolean; // false
  pad_token_id: number | null;
  bos_token_id: number | null; // 1
  eos_token_id: number | number[] | null; // 2
}

const ROPE_TYPES = ['default', 'linear', 'dynamic', 'llama3'] as const;

function parseRope(f: FieldReader, maxPos: number): RopeParameters {
  const key = f.has('rope_parameters') ? 'rope_parameters' : 'rope_scaling';
  const r = f.sub(key) ?? new FieldReader({}, `${key}.`, f.file);
  const rawType = r.has('rope_type') ? r.str('rope_type', 'default') : r.str('type', 'default');
  if (!(ROPE_TYPES as readonly string[]).includes(rawType)) {
    throw new ConfigError(`${key}.rope_type`, `unsupported rope type "${rawType}"; supported: ${ROPE_TYPES.join(', ')}`, f.file);
  }
  const type = rawType as RopeParameters['rope_type'];
  const rope: RopeParameters = { rope_type: type, rope_theta: r.num('rope_theta', f.num('rope_theta', 10000)) };
  if (type !== 'default') rope.factor = r.num('factor', NaN);
  if (type === 'llama3') {
    rope.low_freq_factor = r.num('low_freq_factor', NaN);
    rope.high_freq_factor = r.num('high_freq_factor', NaN);
    rope.original_max_position_embeddings = r.int('original_max_position_embeddings', maxPos);
  }
  return rope;
}

export function parseLlamaConfig(raw: Json, prefix = 'text_config.', file?: string): LlamaConfig {
  const f = new FieldReader(raw, prefix, file);
  const heads = f.int('num_attention_heads', 32);
  const hidden = f.int('hidden_size', 4096);
  const maxPos = f.int('max_position_embeddings', 2048);
  const cfg: LlamaConfig = {
    vocab_size: f.int('vocab_size', 32000),
    hidden_size: hidden,
    intermediate_size: f.int('intermediate_size', 11008),
    num_hidden_layers: f.int('num_hidden_layers', 32),
    num_attention_heads: heads,
    num_key_value_heads: f.optInt('num_key_value_heads') ?? heads,
    head_dim: f.optInt('head_dim') ?? Math.floor(hidden / heads),
    hidden_act: f.str('hidden_act', 'silu'),
    max_position_embeddings: maxPos,
    rms_norm_eps: f.num('rms_norm_eps', 1e-6),
    rope: parseRope(f, maxPos),
    attention_bias: f.bool('attention_bias', false),
    mlp_bias: f.bool('mlp_bias', false),
    tie_word_embeddings: f.bool('tie_word_embeddings', false),
    pad_token_id: f.optInt('pad_token_id'),
    bos_token_id: f.has('bos_token_id') ? f.int('bos_token_id', 1) : raw.bos_token_id === null ? null : 1,
    eos_token_id: f.intOrList('eos_token_id', 2),
  };
  if (hidden % heads !== 0) throw new ConfigError(`${prefix}num_attention_heads`, `hidden_size ${hidden} is not divisible by ${heads} heads`, file);
  if (heads % cfg.num_key_value_heads !== 0) {
    throw new ConfigError(`${prefix}num_key_value_heads`, `${heads} attention heads are not divisible by ${cfg.num_key_value_heads} key/value heads`, file);
  }
  return cfg;
}
