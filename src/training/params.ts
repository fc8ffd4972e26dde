/**
 * Freezing and counting parameters by their checkpoint names. A pattern is an exact name or a glob
 * (`*` any run of characters, dots included; `?` one character) and selects a parameter when it matches
 * the parameter's path or one of the module paths above it, so `model.multi_modal_projector`,
 * `model.language_model.*` and `*.q_proj.*` all work as a PyTorch user would expect.
 */
import { InputError } from '../errors';
import { Module, Parameter } from '../layers/module';

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

/** Does `pattern` select the parameter at `path` (itself or a module above it)? */
export function matchesPattern(path: string, pattern: string): boolean {
  const re = globToRegExp(pattern);
  if (re.test(path)) return true;
  for (let dot = path.indexOf('.'); dot >= 0; dot = path.indexOf('.', dot + 1)) {
    if (re.test(path.slice(0, dot))) return true;
  }
  return false;
}

/**
 * The parameters selected by any of the patterns, in tree order. A pattern that selects nothing is an
 * error (a typo would otherwise silently train or freeze the wrong thing).
 */
export function selectParameters(model: Module, patterns: string | string[]): Array<[string, Parameter]> {
  const list = Array.isArray(patterns) ? patterns : [patterns];
  const all = model.namedParameters();
  for (const pattern of list) {
    if (!all.some(([name]) => matchesPattern(name, pattern))) {
      const example = all.length > 0 ? ` (names look like "${all[Math.floor(all.length / 2)][0]}")` : '';
      throw new InputError('patterns', `"${pattern}" matches no parameter${example}`);
    }
  }
  return all.filter(([name]) => list.some((pattern) => matchesPattern(name, pattern)));
}

/** Sets `trainable` on the selected parameters; returns their names. */
export function setTrainable(model: Module, patterns: string | string[], trainable: boolean): string[] {
  const selected = selectParameters(model, patterns);
  for (const [, p] of selected) p.trainable = trainable;
  return selected.map(([name]) => name);
}

/** Freezes the selected parameters (default: all of them), like requires_grad_(False). */
export function freeze(model: Module, patterns: string | string[] = '*'): string[] {
  return setTrainable(model, patterns, false);
}

/** Unfreezes the selected parameters (default: all of them), like requires_grad_(True). */
export function unfreeze(model: Module, patterns: string | string[] = '*'): string[] {
  return setTrainable(model, patterns, true);
}

export interface CountOptions {
  /** Count only trainable parameters. */
  trainableOnly?: boolean;
}

/** Number of scalar weights (sum of numel), like sum(p.numel() for p in model.parameters()). */
export function countParameters(model: Module, options: CountOptions = {}): number {
  let n = 0;
  for (const [, p] of model.namedParameters()) if (!options.trainableOnly || p.trainable) n += p.size;
  return n;
}

/** PEFT's print_trainable_parameters line: "trainable params: 896 || all params: 53,940 || trainable%: 1.6611". */
export function trainableSummary(model: Module): string {
  const trainable = countParameters(model, { trainableOnly: true });
  const all = countParameters(model);
  const pct = all === 0 ? 0 : (100 * trainable) / all;
  const fmt = (n: number) => n.toLocaleString('en-US');
  return `trainable params: ${fmt(trainable)} || all params: ${fmt(all)} || trainable%: ${pct.toFixed(4)}`;
}
