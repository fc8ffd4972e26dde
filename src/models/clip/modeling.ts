/**
 * CLIP vision transformer (CLIPVisionModel), as both Video-LLaVA towers use it. Module names equal the
 * checkpoint keys under `<tower>.`.
 */
import * as tf from '@tensorflow/tfjs';
import { InputError } from '../../errors';
import { getActivation } from '../../layers/activations';
import { mergeHeads, scaledDotProductAttention, splitHeads } from '../../layers/attention';
import { Embedding } from '../../layers/embedding';
import { Linear } from '../../layers/linear';
import { ClipMLP } from '../../layers/mlp';
import { Module, ModuleList, Parameter, ParameterLayout } from '../../layers/module';
import { LayerNorm } from '../../layers/norm';
import { ClipVisionConfig, clipGrid } from './config';
import { TemporalWeights, checkFrames, temporalBlock } from './temporal';

/** The conv weight [D, C, p, p] kept as the matmul operand [C·p·p, D] (arranged once at load time). */
function patchLayout(D: number, C: number, p: number): ParameterLayout {
  return {
    storageShape: () => [C * p * p, D],
    toStorage: (t) => tf.transpose(tf.reshape(t, [D, C * p * p])),
    toCheckpoint: (t) => tf.reshape(tf.transpose(t), [D, C, p, p]),
  };
}

/** Conv2d with kernel = stride = patch and no bias, done as reshape + matmul (no overlap, no padding). */
export class PatchEmbedding extends Module<[tf.Tensor4D], tf.Tensor3D> {
  readonly weight: Parameter; // checkpoint [D, C, p, p]; stored [C·p·p, D]

  constructor(
    readonly channels: number,
    readonly dim: number,
    readonly patch: number,
  ) {
    super();
    this.weight = this.addParameter('weight', [dim, channels, patch, patch], patchLayout(dim, channels, patch));
  }

  /** [N, C, H, W] → [N, gh·gw, D], patches in row-major order as conv + flatten(2) gives them. */
  forward(pixels: tf.Tensor4D): tf.Tensor3D {
    return tf.tidy(() => {
      const [N, C, H, W] = pixels.shape;
      const p = this.patch;
      const gh = Math.floor(H / p);
      const gw = Math.floor(W / p);
      // The conv ignores trailing pixels that do not fill a patch.
      const cropped = H === gh * p && W === gw * p ? pixels : tf.slice(pixels, [0, 0, 0, 0], [N, C, gh * p, gw * p]);
      const patches = tf.reshape(
        tf.transpose(tf.reshape(cropped, [N, C, gh, p, gw, p]), [0, 2, 4, 1, 3, 5]),
        [N * gh * gw, C * p * p],
      ); // rows flattened in (c, kh, kw) order, the weight's own layout
      return tf.reshape(tf.matMul(patches, this.weight.value), [N, gh * gw, this.dim]);
    });
  }
}

export class ClipVisionEmbeddings extends Module<[tf.Tensor4D], tf.Tensor3D> {
  readonly class_embedding: Parameter; // [D]
  readonly patch_embedding: PatchEmbedding;
  readonly position_embedding: Embedding; // [patches + 1, D]

  constructor(readonly config: ClipVisionConfig) {
    super();
    const D = config.hidden_size;
    this.class_embedding = this.addParameter('class_embedding', [D]);
    this.patch_embedding = this.addModule('patch_embedding', new PatchEmbedding(config.num_channels, D, config.patch_size));
    this.position_embedding = this.addModule('position_embedding', new Embedding(clipGrid(config).positions, D));
  }

  forward(pixels: tf.Tensor4D): tf.Tensor3D {
    return tf.tidy(() => {
      const N = pixels.shape[0];
      const patches = this.patch_embedding.call(pixels); // [N, P, D]
      const D = this.config.hidden_size;
      const cls = tf.broadcastTo(tf.reshape(this.class_embedding.value, [1, 1, D]), [N, 1, D]);
      return tf.add(tf.concat([cls, patches], 1), this.position_embedding.weight.value) as tf.Tensor3D;
    });
  }
}

export class ClipAttention extends Module<[tf.Tensor3D], tf.Tensor3D> {
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly out_proj: Linear;
  private readonly heads: number;
  private readonly scale: number;

  constructor(config: ClipVisionConfig) {
    super();
    const D = config.hidden_size;
    this.heads = config.num_attention_heads;
    this.scale = (D / this.heads) ** -0.5;
    this.q_proj = this.addModule('q_proj', new Linear(D, D));
    this.k_proj = this.addModule('k_proj', new Linear(D, D));
    this.v_proj = this.addModule('v_proj', new Linear(D, D));
    this.out_proj = this.addModule('out_proj', new Linear(D, D));
  }

  /** Bidirectional: every token attends to every token of its image. */
  forward(x: tf.Tensor3D): tf.Tensor3D {
    return tf.tidy(() => {
      const q = splitHeads(this.q_proj.call(x), this.heads);
      const k = splitHeads(this.k_proj.call(x), this.heads);
      const v = splitHeads(this.v_proj.call(x), this.heads);
      const { output } = scaledDotProductAttention(q, k, v, this.scale, null);
      return this.out_proj.call(mergeHeads(output)) as tf.Tensor3D;
    });
  }
}

export class ClipEncoderLayer extends Module<[tf.Tensor3D, number?], tf.Tensor3D> {
  readonly self_attn: ClipAttention;
  readonly layer_norm1: LayerNorm;
  readonly mlp: ClipMLP;
  readonly layer_norm2: LayerNorm;
  // LanguageBind's temporal sub-block (original video tower only; see ./temporal.ts)
  readonly temporal_embedding?: Parameter; // [1, maxFrames, D]
  readonly temporal_layer_norm1?: LayerNorm;
  readonly temporal_attn?: ClipAttention;

  /** `temporalFrames` > 0 adds the temporal sub-block with an embedding for that many frames. */
  constructor(config: ClipVisionConfig, temporalFrames = 0) {
    super();
    getActivation(config.hidden_act, 'vision_config.hidden_act'); // fail at build time, naming the field
    const D = config.hidden_size;
    this.self_attn = this.addModule('self_attn', new ClipAttention(config));
    this.layer_norm1 = this.addModule('layer_norm1', new LayerNorm(D, config.layer_norm_eps));
    this.mlp = this.addModule('mlp', new ClipMLP(D, config.intermediate_size, config.hidden_act));
    this.layer_norm2 = this.addModule('layer_norm2', new LayerNorm(D, config.layer_norm_eps));
    if (temporalFrames > 0) {
      this.temporal_embedding = this.addParameter('temporal_embedding', [1, temporalFrames, D]);
      this.temporal_attn = this.addModule('temporal_attn', new ClipAttention(config));
      this.temporal_layer_norm1 = this.addModule('temporal_layer_norm1', new LayerNorm(D, config.layer_norm_eps));
    }
  }

  temporalWeights(): TemporalWeights | null {
    const { temporal_embedding, temporal_layer_norm1, temporal_attn } = this;
    return temporal_embedding && temporal_layer_norm1 && temporal_attn ? { temporal_embedding, temporal_layer_norm1, temporal_attn } : null;
  }

  /** x [N·T, n, D]; `frames` = T, the frames of each video (used by the temporal sub-block only). */
  forward(x: tf.Tensor3D, frames = 1): tf.Tensor3D {
    return tf.tidy(() => {
      const temporal = this.temporalWeights();
      const t = temporal ? temporalBlock(temporal, x, frames) : x;
      const h = tf.add(t, this.self_attn.call(this.layer_norm1.call(t) as tf.Tensor3D));
      return tf.add(h, this.mlp.call(this.layer_norm2.call(h))) as tf.Tensor3D;
    });
  }
}

export class ClipEncoder extends Module<[], never> {
  readonly layers: ModuleList<ClipEncoderLayer>;

  constructor(config: ClipVisionConfig, temporalFrames = 0) {
    super();
    const layers = Array.from({ length: config.num_hidden_layers }, () => new ClipEncoderLayer(config, temporalFrames));
    this.layers = this.addModule('layers', new ModuleList(layers));
  }

  forward(): never {
    throw new Error('call ClipVisionModel instead');
  }
}

export interface ClipVisionOptions {
  /** Run only this many encoder layers (the rest of the hidden states are not computed). Default: all. */
  numLayers?: number;
  /** Which hidden states to return (index 0 = after pre_layrnorm, i = output of layer i−1). Default: all. */
  keep?: (index: number) => boolean;
  /** Frames per video when the input is N videos of T frames laid out [N·T, C, H, W] (temporal towers only). Default 1. */
  framesPerVideo?: number;
}

export interface ClipVisionOutput {
  /** hidden_states[i], or null where not kept or not computed. */
  hiddenStates: Array<tf.Tensor3D | null>;
}

/**
 * CLIPVisionModel as transformers 5.24 lays it out: embeddings, pre_layrnorm, encoder and post_layernorm
 * directly under the tower (older checkpoints put them under `vision_model.`; the key map strips it).
 */
export class ClipVisionModel extends Module<[tf.Tensor4D, ClipVisionOptions?], ClipVisionOutput> {
  readonly embeddings: ClipVisionEmbeddings;
  readonly pre_layrnorm: LayerNorm; // sic: the checkpoint's spelling
  readonly encoder: ClipEncoder;
  readonly post_layernorm: LayerNorm; // loaded for completeness; Video-LLaVA never uses it

  /** `temporalFrames` > 0: every encoder layer gets LanguageBind's temporal sub-block (the original video tower). */
  constructor(
    readonly config: ClipVisionConfig,
    readonly temporalFrames = 0,
  ) {
    super();
    this.embeddings = this.addModule('embeddings', new ClipVisionEmbeddings(config));
    this.pre_layrnorm = this.addModule('pre_layrnorm', new LayerNorm(config.hidden_size, config.layer_norm_eps));
    this.encoder = this.addModule('encoder', new ClipEncoder(config, temporalFrames));
    this.post_layernorm = this.addModule('post_layernorm', new LayerNorm(config.hidden_size, config.layer_norm_eps));
  }

  forward(pixels: tf.Tensor4D, options: ClipVisionOptions = {}): ClipVisionOutput {
    const { image_size: size, num_channels: C } = this.config;
    const [, c, h, w] = pixels.shape;
    if (pixels.rank !== 4 || c !== C || h !== size || w !== size) {
      throw new InputError('pixelValues', `expected [N, ${C}, ${size}, ${size}], found [${pixels.shape.join(', ')}]`);
    }
    const frames = options.framesPerVideo ?? 1;
    if (this.temporalFrames > 0) checkFrames(pixels.shape[0], frames, this.temporalFrames);
    const total = this.config.num_hidden_layers;
    const numLayers = Math.min(options.numLayers ?? total, total);
    const keep = options.keep ?? (() => true);
    const hiddenStates: Array<tf.Tensor3D | null> = new Array(total + 1).fill(null);
    let x = tf.tidy(() => this.pre_layrnorm.call(this.embeddings.call(pixels)) as tf.Tensor3D);
    try {
      for (let i = 0; i <= numLayers; i++) {
        if (i > 0) {
          const next = this.encoder.layers.items[i - 1].call(x, frames);
          if (hiddenStates[i - 1] !== x) x.dispose();
          x = next;
        }
        if (keep(i)) hiddenStates[i] = x;
      }
    } catch (e) {
      tf.dispose([x, ...hiddenStates.filter((h): h is tf.Tensor3D => h !== null && h !== x)]);
      throw e;
    }
    if (hiddenStates[numLayers] !== x) x.dispose();
    return { hiddenStates };
  }
}
