/**
 * Llama decoder (LlamaModel) and its causal-LM head. Module names equal the checkpoint keys under
 * `model.language_model.` (decoder) and `lm_head.`.
 */
import * as tf from '@tensorflow/tfjs';
import { InputError } from '../../errors';
import { KVCache, blockAttention } from '../../generation/cache';
import { MASK_MIN, mergeHeads, scaledDotProductAttention, splitHeads } from '../../layers/attention';
import { Embedding } from '../../layers/embedding';
import { Linear } from '../../layers/linear';
import { GatedMLP } from '../../layers/mlp';
import { Module, ModuleList } from '../../layers/module';
import { RMSNorm } from '../../layers/norm';
import { RotaryEmbedding, applyRotary } from '../../layers/rope';
import { LlamaConfig } from './config';

/** What every decoder layer needs besides its input. */
export interface DecoderContext {
  cos: tf.Tensor4D; // [B, 1, L, headDim]
  sin: tf.Tensor4D;
  mask: tf.Tensor4D; // additive, [B, 1, L, past + L]
  cache?: KVCache;
  outputAttentions?: boolean;
  /** Filled with attention probabilities [B, H, L, past + L] per layer when outputAttentions is set. */
  attentions?: tf.Tensor4D[];
}

export class LlamaAttention extends Module<[tf.Tensor3D, DecoderContext], tf.Tensor3D> {
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly o_proj: Linear;
  private readonly heads: number;
  private readonly kvHeads: number;
  private readonly scale: number;

  constructor(
    config: LlamaConfig,
    readonly layerIndex: number,
  ) {
    super();
    const { hidden_size: D, num_attention_heads: H, num_key_value_heads: Hkv, head_dim: hd, attention_bias: bias } = config;
    this.heads = H;
    this.kvHeads = Hkv;
    this.scale = hd ** -0.5;
    this.q_proj = this.addModule('q_proj', new Linear(D, H * hd, bias));
    this.k_proj = this.addModule('k_proj', new Linear(D, Hkv * hd, bias));
    this.v_proj = this.addModule('v_proj', new Linear(D, Hkv * hd, bias));
    this.o_proj = this.addModule('o_proj', new Linear(H * hd, D, bias));
  }

  forward(x: tf.Tensor3D, ctx: DecoderContext): tf.Tensor3D {
    return tf.tidy(() => {
      const q = applyRotary(splitHeads(this.q_proj.call(x), this.heads), ctx.cos, ctx.sin) as tf.Tensor4D;
      const k = applyRotary(splitHeads(this.k_proj.call(x), this.kvHeads), ctx.cos, ctx.sin) as tf.Tensor4D;
      const v = splitHeads(this.v_proj.call(x), this.kvHeads);
      const { output, probs } = ctx.cache
        ? blockAttention(q, ctx.cache.update(this.layerIndex, k, v), this.scale, ctx.mask, ctx.outputAttentions)
        : scaledDotProductAttention(q, k, v, this.scale, ctx.mask, ctx.outputAttentions);
      if (probs) ctx.attentions?.push(tf.keep(probs));
      return this.o_proj.call(mergeHeads(output)) as tf.Tensor3D;
    });
  }
}

export class LlamaDecoderLayer extends Module<[tf.Tensor3D, DecoderContext], tf.Tensor3D> {
  readonly self_attn: LlamaAttention;
  readonly mlp: GatedMLP;
  readonly input_layernorm: RMSNorm;
  readonly post_attention_layernorm: RMSNorm;

  constructor(config: LlamaConfig, layerIndex: number) {
    super();
    const D = config.hidden_size;
    this.self_attn = this.addModule('self_attn', new LlamaAttention(config, layerIndex));
    this.mlp = this.addModule('mlp', new GatedMLP(D, config.intermediate_size, config.hidden_act, config.mlp_bias));
    this.input_layernorm = this.addModule('input_layernorm', new RMSNorm(D, config.rms_norm_eps));
    this.post_attention_layernorm = this.addModule('post_attention_layernorm', new RMSNorm(D, config.rms_norm_eps));
  }

  forward(x: tf.Tensor3D, ctx: DecoderContext): tf.Tensor3D {
    return tf.tidy(() => {
      const h = tf.add(x, this.self_attn.call(this.input_layernorm.call(x) as tf.Tensor3D, ctx)) as tf.Tensor3D;
      return tf.add(h, this.mlp.call(this.post_attention_layernorm.call(h))) as tf.Tensor3D;
    });
  }
}

export interface DecoderInput {
  inputsEmbeds: tf.Tensor3D; // [B, L, D]
  /** [B, past + L] of 0/1; default all ones. */
  attentionMask?: number[][];
  /** [B, L]; default past..past+L−1 for every row (the reference's plain forward). */
  positionIds?: number[][];
  cache?: KVCache;
  outputHiddenStates?: boolean;
  outputAttentions?: boolean;
}

export interface DecoderOutput {
  lastHiddenState: tf.Tensor3D; // after the final norm
  /** [embeddings, layer 1, …, layer n−1, norm(layer n)]: the reference's hidden_states tuple. */
  hiddenStates?: tf.Tensor3D[];
  attentions?: tf.Tensor4D[];
}

export class LlamaModel extends Module<[DecoderInput], DecoderOutput> {
  readonly embed_tokens: Embedding;
  readonly layers: ModuleList<LlamaDecoderLayer>;
  readonly norm: RMSNorm;
  readonly rotary: RotaryEmbedding;

  constructor(readonly config: LlamaConfig) {
    super();
    const D = config.hidden_size;
    this.embed_tokens = this.addModule('embed_tokens', new Embedding(config.vocab_size, D, { large: true }));
    const layers = Array.from({ length: config.num_hidden_layers }, (_, i) => new LlamaDecoderLayer(config, i));
    this.layers = this.addModule('layers', new ModuleList(layers));
    this.norm = this.addModule('norm', new RMSNorm(D, config.rms_norm_eps));
    this.rotary = new RotaryEmbedding(config.head_dim, config.rope, config.max_position_embeddings);
  }

  forward(input: DecoderInput): DecoderOutput {
    const { inputsEmbeds, cache } = input;
    const [B, L] = inputsEmbeds.shape;
    const past = cache?.length ?? 0;
    const positions = input.positionIds ?? Array.from({ length: B }, () => Array.from({ length: L }, (_, i) => past + i));
    checkRows('positionIds', positions, B, L);
    const attentionMask = input.attentionMask ?? Array.from({ length: B }, () => new Array<number>(past + L).fill(1));
    checkRows('attentionMask', attentionMask, B, past + L);

    const [cos, sin] = this.rotary.cosSin(positions);
    const mask = causalMask(attentionMask, L, past);
    const ctx: DecoderContext = { cos, sin, mask, cache, outputAttentions: input.outputAttentions, attentions: [] };
    const hiddenStates: tf.Tensor3D[] = [];
    let x = inputsEmbeds;
    try {
      for (const layer of this.layers.items) {
        if (input.outputHiddenStates) hiddenStates.push(x === inputsEmbeds ? x.clone() : x);
        const next = layer.call(x, ctx);
        if (x !== inputsEmbeds && !input.outputHiddenStates) x.dispose();
        x = next;
      }
      const last = this.norm.call(x) as tf.Tensor3D;
      if (x !== inputsEmbeds) x.dispose();
      if (input.outputHiddenStates) hiddenStates.push(last.clone());
      cache?.commit(L);
      return {
        lastHiddenState: last,
        hiddenStates: input.outputHiddenStates ? hiddenStates : undefined,
        attentions: input.outputAttentions ? ctx.attentions : undefined,
      };
    } finally {
      tf.dispose([cos, sin, mask]);
    }
  }
}

function checkRows(argument: string, rows: number[][], B: number, L: number): void {
  if (rows.length !== B || rows.some((r) => r.length !== L)) {
    throw new InputError(argument, `expected ${B} rows of length ${L}, found ${rows.length} rows of lengths [${rows.map((r) => r.length).join(', ')}]`);
  }
}

/**
 * Additive mask [B, 1, L, past + L]: query i (absolute position past + i) may see key j iff j ≤ past + i
 * and attentionMask[b][j] = 1. Disallowed entries get MASK_MIN, so fully masked rows stay finite.
 */
export function causalMask(attentionMask: number[][], L: number, past: number): tf.Tensor4D {
  const B = attentionMask.length;
  const T = past + L;
  const data = new Float32Array(B * L * T);
  for (let b = 0; b < B; b++) {
    const row = attentionMask[b];
    for (let i = 0; i < L; i++) {
      const base = (b * L + i) * T;
      for (let j = 0; j < T; j++) data[base + j] = j <= past + i && row[j] !== 0 ? 0 : MASK_MIN;
    }
  }
  return tf.tensor4d(data, [B, 1, L, T]);
}
