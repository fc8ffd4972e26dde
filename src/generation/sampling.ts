/**
 * Next-token selection on the host: the logits processors of transformers 5.24 that generate() uses
 * (same semantics, own code), greedy argmax, and seeded categorical sampling.
 *
 * Every processor works in place on one row of scores, a Float32Array [vocab], so each arithmetic
 * result is rounded to float32 exactly as torch's float32 tensors are. Filtered entries become -Infinity.
 *
 * Order (as transformers' _get_logits_processor): repetition penalty, min-new-tokens; then, only when
 * sampling: temperature, top-k, top-p.
 */
import { InputError } from '../errors';

/** RepetitionPenaltyLogitsProcessor: every id in `seen` gets score·p if score < 0, else score/p. */
export function applyRepetitionPenalty(scores: Float32Array, seen: Iterable<number>, penalty: number): Float32Array {
  const p = Math.fround(penalty); // torch casts the scalar to the scores' float32
  const done = new Set<number>();
  for (const id of seen) {
    if (id < 0 || id >= scores.length || done.has(id)) continue; // ids past the head's vocab cannot be generated
    done.add(id);
    const s = scores[id];
    scores[id] = s < 0 ? s * p : s / p;
  }
  return scores;
}

/** MinNewTokensLengthLogitsProcessor: eos ids get -Infinity while fewer than `minNewTokens` were generated. */
export function applyMinNewTokens(scores: Float32Array, eos: readonly number[], generated: number, minNewTokens: number): Float32Array {
  if (generated < minNewTokens) for (const id of eos) if (id >= 0 && id < scores.length) scores[id] = -Infinity;
  return scores;
}

/** TemperatureLogitsWarper: scores / t. */
export function applyTemperature(scores: Float32Array, temperature: number): Float32Array {
  const t = Math.fround(temperature); // as torch: float32 / float32(t), rounded to float32 on store
  for (let i = 0; i < scores.length; i++) scores[i] = scores[i] / t;
  return scores;
}

/** TopKLogitsWarper: removes scores below the k-th largest (ties with it are kept). */
export function applyTopK(scores: Float32Array, topK: number, minTokensToKeep = 1): Float32Array {
  const k = Math.min(Math.max(topK, minTokensToKeep), scores.length);
  const kth = Float32Array.from(scores).sort((a, b) => b - a)[k - 1];
  for (let i = 0; i < scores.length; i++) if (scores[i] < kth) scores[i] = -Infinity;
  return scores;
}

/**
 * TopPLogitsWarper: sorts ascending, removes the tokens whose cumulative probability (from the least
 * likely up) is ≤ 1 − p, always keeping the `minTokensToKeep` most likely. Probabilities in float64.
 */
export function applyTopP(scores: Float32Array, topP: number, minTokensToKeep = 1): Float32Array {
  const order = Array.from(scores.keys()).sort((a, b) => scores[a] - scores[b] || a - b);
  const probs = softmax(scores);
  const keepFrom = scores.length - minTokensToKeep; // sorted positions ≥ keepFrom are always kept
  let cumulative = 0;
  const removed: number[] = [];
  for (let r = 0; r < order.length; r++) {
    cumulative += probs[order[r]];
    if (cumulative <= 1 - topP && r < keepFrom) removed.push(order[r]);
  }
  for (const id of removed) scores[id] = -Infinity;
  return scores;
}

/** Numerically stable softmax in float64; -Infinity gets 0. */
export function softmax(scores: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < scores.length; i++) if (scores[i] > max) max = scores[i];
  const out = new Float64Array(scores.length);
  let sum = 0;
  for (let i = 0; i < scores.length; i++) sum += out[i] = scores[i] === -Infinity ? 0 : Math.exp(scores[i] - max);
  for (let i = 0; i < out.length; i++) out[i] /= sum;
  return out;
}

/** Index of the largest score; the first one on ties (torch.argmax). */
export function argmax(scores: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < scores.length; i++) if (scores[i] > scores[best]) best = i;
  return best;
}

/** Draws an index with probability softmax(scores)[i]. */
export function sampleIndex(scores: ArrayLike<number>, rng: Rng): number {
  const probs = softmax(scores);
  const u = rng.nextFloat();
  let cumulative = 0;
  let last = 0;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] === 0) continue;
    cumulative += probs[i];
    last = i;
    if (u < cumulative) return i;
  }
  return last; // u fell past the float64 rounding of the total
}

/** The processor settings of one generate call, already validated. */
export interface SelectionSettings {
  doSample: boolean;
  temperature: number; // 1 = off
  topK: number; // 0 = off
  topP: number; // 1 = off
  repetitionPenalty: number; // 1 = off
  minNewTokens: number; // 0 = off
  eosTokenIds: readonly number[];
}

/**
 * Runs the processors on one row (in place) and picks its next token. `seen` are the ids the repetition
 * penalty looks at: the row's prompt without its left padding, then its generated tokens.
 */
export function selectToken(scores: Float32Array, seen: readonly number[], generated: number, s: SelectionSettings, rng: Rng | null): number {
  if (s.repetitionPenalty !== 1) applyRepetitionPenalty(scores, seen, s.repetitionPenalty);
  if (s.minNewTokens > 0) applyMinNewTokens(scores, s.eosTokenIds, generated, s.minNewTokens);
  if (!s.doSample) return argmax(scores);
  if (s.temperature !== 1) applyTemperature(scores, s.temperature);
  if (s.topK > 0) applyTopK(scores, s.topK);
  if (s.topP < 1) applyTopP(scores, s.topP);
  return sampleIndex(scores, rng!);
}

/**
 * The seeded random number generator: xoshiro128** (Blackman & Vigna), its 128-bit state filled from
 * the seed by splitmix32. nextFloat() joins two 32-bit outputs into a uniform double in [0, 1) with 53
 * random bits. The same seed gives the same stream on every platform; it is not torch's generator, so
 * sampled tokens do not match Python's for the same seed.
 */
export class Rng {
  private readonly s = new Uint32Array(4);

  constructor(readonly seed: number) {
    if (!Number.isSafeInteger(seed) || seed < 0) throw new InputError('seed', `expected a non-negative integer, found ${seed}`);
    let x = (seed >>> 0) ^ Math.floor(seed / 2 ** 32); // both halves of the seed count
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0; // splitmix32
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
    if (this.s.every((v) => v === 0)) this.s[0] = 1; // the all-zero state is a fixed point
  }

  /** Next 32-bit output. */
  nextUint32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform in [0, 1). */
  nextFloat(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** A seed for callers who gave none (so the result can report it and the run can be repeated). */
export function randomSeed(): number {
  return Math.floor(Math.random() * 2 ** 32);
}
