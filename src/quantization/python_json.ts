/**
 * Python's `json.dumps(dict)` text (default ", " / ": " separators, keys in insertion order, ensure_ascii)
 * for the small dict bitsandbytes packs into a 4-bit checkpoint as a uint8 tensor.
 */
import { pyFloatRepr } from '../training/json';

/** A value of the packed dict: a Python int or float (tagged), a string, or a list of ints. */
export type PyValue = { int: number } | { float: number } | string | number[];

function pyString(s: string): string {
  return JSON.stringify(s).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function pyValue(v: PyValue): string {
  if (typeof v === 'string') return pyString(v);
  if (Array.isArray(v)) return `[${v.map((d) => String(d)).join(', ')}]`;
  if ('int' in v) return String(v.int);
  return pyFloatRepr(v.float);
}

export function pythonJsonDumps(entries: Array<[string, PyValue]>): string {
  return `{${entries.map(([k, v]) => `${pyString(k)}: ${pyValue(v)}`).join(', ')}}`;
}
