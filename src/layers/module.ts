/**
 * The module tree: every layer is a Module with named children and named parameters, so that a
 * parameter's path equals its key in the Hugging Face checkpoint (`model.language_model.layers.0.
 * self_attn.q_proj.weight`). Loading, freezing, hooks, LoRA and saving all walk this one tree.
 */
import * as tf from '@tensorflow/tfjs';
import { WeightsError } from '../errors';
import { StoredWeight } from '../weights/stored';

/**
 * How a parameter is stored when the compute layout differs from the checkpoint layout (e.g. Linear keeps
 * Wᵀ [in, out] so every forward is a plain x·Wᵀ matMul with no per-call transpose: the stock wasm kernel is
 * ~10× slower with transposeB). `shape`, set(), checkpointValue() and gradients returned by
 * valueAndGrads all speak the checkpoint layout; only `value` (the tf.Variable) is in storage layout.
 */
export interface ParameterLayout {
  storageShape(shape: readonly number[]): number[];
  /** Checkpoint layout → storage layout (a new tensor). */
  toStorage(t: tf.Tensor): tf.Tensor;
  /** Storage layout → checkpoint layout (a new tensor). */
  toCheckpoint(t: tf.Tensor): tf.Tensor;
}

/** A 2-D weight stored transposed. */
export const TRANSPOSED_2D: ParameterLayout = {
  storageShape: ([a, b]) => [b, a],
  toStorage: (t) => tf.transpose(t),
  toCheckpoint: (t) => tf.transpose(t),
};

/**
 * A weight of known shape. It starts empty ("meta") so a model can be built from its config without
 * allocating memory, and is filled once by the loader; it then owns either one tf.Variable (float32, in the
 * tensor heap) or, for a `packable` weight loaded in a 16-bit or quantized format, one StoredWeight outside the
 * heap (src/weights/stored.ts). Layers multiply with either through src/native/stored_matmul.ts.
 */
export class Parameter {
  private variable: tf.Variable | null = null;
  private storedWeight: StoredWeight | null = null;

  constructor(
    readonly shape: readonly number[], // checkpoint layout
    private trainableFlag = true,
    readonly layout: ParameterLayout | null = null,
    /** A large 2-D weight (Linear, token embedding) that may stay in its stored format outside the heap. */
    readonly packable = false,
  ) {}

  get loaded(): boolean {
    return this.variable !== null || this.storedWeight !== null;
  }

  /** The tensor in storage layout (see ParameterLayout); throws when the loader has not filled it. */
  get value(): tf.Variable {
    if (this.variable === null) {
      if (this.storedWeight) {
        throw new WeightsError(
          `this weight is kept as ${this.storedWeight.format} outside the tensor heap and has no float32 tensor; ` +
            "read it with checkpointValue(), or load the model with dtype: 'float32'",
        );
      }
      throw new WeightsError('parameter used before it was loaded');
    }
    return this.variable;
  }

  /** The weight in its stored format when it is kept outside the heap; null for a float32 tensor. */
  get stored(): StoredWeight | null {
    return this.storedWeight;
  }

  /**
   * Takes ownership of a stored-format weight (checkpoint layout [rows, cols]), replacing any previous value. A
   * stored weight is frozen: its gradient would need a float32 copy (train adapters on it, or load float32).
   */
  setStored(w: StoredWeight, name = 'parameter'): void {
    if (!this.packable) {
      w.dispose();
      throw new WeightsError(`${name}: only large 2-D weights (Linear, token embeddings) can stay outside the tensor heap`, name);
    }
    if (!shapesEqual(w.shape, this.shape)) {
      w.dispose();
      throw new WeightsError(`${name}: expected shape [${this.shape.join(', ')}], found [${w.shape.join(', ')}]`, name);
    }
    this.dispose();
    this.storedWeight = w;
    this.trainableFlag = false;
  }

  get storageShape(): number[] {
    return this.layout ? this.layout.storageShape(this.shape) : [...this.shape];
  }

  get trainable(): boolean {
    return this.trainableFlag;
  }

  set trainable(flag: boolean) {
    if (flag && this.storedWeight) {
      throw new WeightsError(
        `a weight kept as ${this.storedWeight.format} outside the tensor heap cannot be trained; ` +
          "train LoRA adapters on it, or load the model with dtype: 'float32'",
      );
    }
    this.trainableFlag = flag;
    if (this.variable) this.variable.trainable = flag;
  }

  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  /** Takes ownership of `t` (checkpoint layout, exact shape). Replaces the previous value if any. */
  set(t: tf.Tensor, name = 'parameter'): void {
    if (!shapesEqual(t.shape, this.shape)) {
      t.dispose();
      throw new WeightsError(
        `${name}: expected shape [${this.shape.join(', ')}], found [${t.shape.join(', ')}]`,
        name,
      );
    }
    const value = tf.tidy(() => {
      const f32 = t.dtype === 'float32' ? t : tf.cast(t, 'float32');
      return this.layout ? this.layout.toStorage(f32) : f32;
    });
    if (value !== t) t.dispose();
    if (this.storedWeight) {
      this.storedWeight.dispose();
      this.storedWeight = null;
    }
    if (this.variable === null) {
      this.variable = tf.variable(value, this.trainableFlag);
    } else {
      this.variable.assign(value);
    }
    value.dispose();
  }

  /** The value in checkpoint layout, as a new float32 tensor the caller owns (a stored weight is widened). */
  checkpointValue(): tf.Tensor {
    const w = this.storedWeight;
    if (w) return tf.tensor(w.widenRows(0, w.rows), [...this.shape]);
    return this.toCheckpointLayout(this.value);
  }

  /**
   * A storage-layout tensor (the value, a gradient, an update) in checkpoint layout; a new tensor. Under
   * tidy: a layout may take several ops, whose intermediates must not outlive the call.
   */
  toCheckpointLayout(t: tf.Tensor): tf.Tensor {
    const layout = this.layout;
    return layout ? tf.tidy(() => layout.toCheckpoint(t)) : t.clone();
  }

  /** A checkpoint-layout tensor in storage layout; a new tensor (intermediates freed, as above). */
  toStorageLayout(t: tf.Tensor): tf.Tensor {
    const layout = this.layout;
    return layout ? tf.tidy(() => layout.toStorage(t)) : t.clone();
  }

  dispose(): void {
    this.variable?.dispose();
    this.variable = null;
    this.storedWeight?.dispose();
    this.storedWeight = null;
  }
}

export function shapesEqual(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Called before forward; may return replacement arguments. */
export type ForwardPreHook = (module: Module, args: unknown[]) => unknown[] | void;
/** Called after forward; may return a replacement output (the hook then owns the old one). */
export type ForwardHook = (module: Module, args: unknown[], output: unknown) => unknown | void;

export interface HookHandle {
  remove(): void;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export abstract class Module<Args extends unknown[] = any[], Out = any> {
  private readonly modules = new Map<string, Module>();
  private readonly params = new Map<string, Parameter>();
  private readonly preHooks = new Map<number, ForwardPreHook>();
  private readonly hooks = new Map<number, ForwardHook>();
  private static nextHookId = 0;

  abstract forward(...args: Args): Out;

  /** Runs forward with the registered hooks around it. Always call layers through this. */
  call(...args: Args): Out {
    if (this.preHooks.size === 0 && this.hooks.size === 0) return this.forward(...args);
    let input: unknown[] = args;
    for (const hook of this.preHooks.values()) input = hook(this, input) ?? input;
    let output: unknown = this.forward(...(input as Args));
    for (const hook of this.hooks.values()) {
      const replaced = hook(this, input, output);
      if (replaced !== undefined) output = replaced;
    }
    return output as Out;
  }

  protected addModule<M extends Module>(name: string, module: M): M {
    this.modules.set(name, module);
    return module;
  }

  protected addParameter(name: string, shape: readonly number[], layout: ParameterLayout | null = null, packable = false): Parameter {
    const p = new Parameter(shape, true, layout, packable);
    this.params.set(name, p);
    return p;
  }

  /** Replaces a child module (used by LoRA to wrap a Linear); returns the old one. */
  replaceModule(name: string, module: Module): Module {
    const old = this.modules.get(name);
    if (!old) throw new WeightsError(`no submodule "${name}" to replace`);
    this.modules.set(name, module);
    return old;
  }

  /** Removes a child module (LoRA unloading); returns it, or undefined when there is none. */
  removeModule(name: string): Module | undefined {
    const old = this.modules.get(name);
    this.modules.delete(name);
    return old;
  }

  children(): Array<[string, Module]> {
    return [...this.modules.entries()];
  }

  *namedModules(prefix = ''): Generator<[string, Module]> {
    yield [prefix, this];
    for (const [name, m] of this.modules) yield* m.namedModules(prefix ? `${prefix}.${name}` : name);
  }

  namedParameters(prefix = ''): Array<[string, Parameter]> {
    const out: Array<[string, Parameter]> = [];
    for (const [path, m] of this.namedModules(prefix)) {
      for (const [name, p] of m.params) out.push([path ? `${path}.${name}` : name, p]);
    }
    return out;
  }

  getSubmodule(path: string): Module {
    if (path === '') return this;
    let m: Module = this;
    for (const part of path.split('.')) {
      const next = m.modules.get(part);
      if (!next) throw new WeightsError(`no submodule "${path}" (stopped at "${part}")`);
      m = next;
    }
    return m;
  }

  getParameter(path: string): Parameter {
    const dot = path.lastIndexOf('.');
    const owner = this.getSubmodule(dot < 0 ? '' : path.slice(0, dot));
    const p = owner.params.get(path.slice(dot + 1));
    if (!p) throw new WeightsError(`no parameter "${path}"`, path);
    return p;
  }

  registerForwardPreHook(hook: ForwardPreHook): HookHandle {
    const id = Module.nextHookId++;
    this.preHooks.set(id, hook);
    return { remove: () => void this.preHooks.delete(id) };
  }

  registerForwardHook(hook: ForwardHook): HookHandle {
    const id = Module.nextHookId++;
    this.hooks.set(id, hook);
    return { remove: () => void this.hooks.delete(id) };
  }

  /** Frees every parameter of this subtree. */
  dispose(): void {
    for (const [, p] of this.namedParameters()) p.dispose();
  }
}

/** An indexed list of modules; children are named "0", "1", ... like torch.nn.ModuleList. */
export class ModuleList<M extends Module> extends Module<[], never> {
  readonly items: M[] = [];

  constructor(items: M[]) {
    super();
    items.forEach((m, i) => {
      this.addModule(String(i), m);
      this.items.push(m);
    });
  }

  get length(): number {
    return this.items.length;
  }

  forward(): never {
    throw new Error('ModuleList has no forward; call its items');
  }
}
