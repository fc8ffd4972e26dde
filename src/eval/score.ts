/**
 * Scores and the summary table of an evaluation.
 *
 *   exact  the answer equals the reference, both trimmed (the demo model's own metric: "circle.")
 *   match  equal after the usual open-ended QA normalisation: lower case, punctuation dropped, the
 *          articles a/an/the dropped, runs of spaces collapsed ("A circle." matches "circle")
 *
 * Accuracy counts failed items as wrong: a run that errors on a third of its items does not get to report
 * the accuracy of the other two thirds alone (the error column says how many failed).
 */
import type { ItemResult } from './results';

export function normalizeAnswer(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s]/gu, ' ')
    .split(/\s+/)
    .filter((w) => w !== '' && w !== 'a' && w !== 'an' && w !== 'the')
    .join(' ');
}

/** exact / match of an answer against a reference. */
export function score(answer: string, reference: string): { exact: boolean; match: boolean } {
  return { exact: answer.trim() === reference.trim(), match: normalizeAnswer(answer) === normalizeAnswer(reference) };
}

export interface Tally {
  items: number;
  errors: number;
  /** Items with a reference answer (failed ones included). */
  scored: number;
  exact: number;
  match: number;
}

export interface EvalSummary {
  /** By question type ('(none)' for items without one), sorted by name. */
  byType: Array<[string, Tally]>;
  total: Tally;
  /** Error class name → count. */
  errorKinds: Array<[string, number]>;
  /** Means over the items that ran: generated tokens, and model milliseconds (the item's share of its batch). */
  meanTokens: number;
  meanModelMs: number;
}

const NO_TYPE = '(none)';
const empty = (): Tally => ({ items: 0, errors: 0, scored: 0, exact: 0, match: 0 });

export function summarize(results: Iterable<ItemResult>): EvalSummary {
  const byType = new Map<string, Tally>();
  const total = empty();
  const errorKinds = new Map<string, number>();
  let ran = 0;
  let tokens = 0;
  let modelMs = 0;
  for (const r of results) {
    const t = byType.get(r.type ?? NO_TYPE) ?? empty();
    byType.set(r.type ?? NO_TYPE, t);
    for (const tally of [t, total]) {
      tally.items++;
      if (r.error) tally.errors++;
      if (r.reference !== undefined) tally.scored++;
      if (r.exact) tally.exact++;
      if (r.match) tally.match++;
    }
    if (r.error) errorKinds.set(r.error.type, (errorKinds.get(r.error.type) ?? 0) + 1);
    else {
      ran++;
      tokens += r.tokens;
      if (r.timings) modelMs += r.timings.visionMs + r.timings.prefillMs + r.timings.decodeMs;
    }
  }
  const sorted = [...byType.entries()].sort(([a], [b]) => (a === NO_TYPE ? 1 : b === NO_TYPE ? -1 : a < b ? -1 : a > b ? 1 : 0));
  const mean = (x: number) => (ran > 0 ? x / ran : 0);
  return {
    byType: sorted,
    total,
    errorKinds: [...errorKinds.entries()].sort((a, b) => b[1] - a[1]),
    meanTokens: mean(tokens),
    meanModelMs: mean(modelMs),
  };
}

const pct = (n: number, d: number) => (d === 0 ? 'n/a' : `${((100 * n) / d).toFixed(1)}%`);

/** A markdown table: per type and in all, items, errors, exact-match and normalised-match accuracy. */
export function summaryTable(s: EvalSummary): string {
  const lines = ['| type | items | errors | exact | accuracy (exact) | accuracy (normalised) |', '|---|---:|---:|---:|---:|---:|'];
  const row = (name: string, t: Tally) => `| ${name} | ${t.items} | ${t.errors} | ${t.exact} | ${pct(t.exact, t.scored)} | ${pct(t.match, t.scored)} |`;
  for (const [name, t] of s.byType) lines.push(row(name, t));
  lines.push(row('**all**', s.total));
  if (s.errorKinds.length > 0) lines.push('', `errors: ${s.errorKinds.map(([k, n]) => `${k} ${n}`).join(', ')}`);
  if (s.total.items > s.total.errors) {
    lines.push(`per item: ${s.meanTokens.toFixed(1)} new tokens, model ${s.meanModelMs.toFixed(0)} ms (its share of its batch)`);
  }
  return lines.join('\n');
}
