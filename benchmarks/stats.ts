/** Summary statistics and process memory readings shared by the orchestrator and the tfjs worker. */
import * as fs from 'fs';

export interface Summary {
  min: number;
  median: number;
  max: number;
  n: number;
}

export function summarize(xs: number[]): Summary {
  if (xs.length === 0) return { min: NaN, median: NaN, max: NaN, n: 0 };
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { min: s[0], median, max: s[s.length - 1], n: s.length };
}

/** A Summary of 1/x (e.g. tokens per second from seconds per token): min and max swap. */
export function invert(s: Summary, scale = 1): Summary {
  return { min: scale / s.max, median: scale / s.median, max: scale / s.min, n: s.n };
}

const MB = 1024 * 1024;

/** VmRSS and VmHWM of this process in MiB (Linux); falls back to process.memoryUsage elsewhere. */
export function procMemory(): { rssMB: number; hwmMB: number } {
  try {
    const status = fs.readFileSync('/proc/self/status', 'utf8');
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { rssMB: kb('VmRSS') / 1024, hwmMB: kb('VmHWM') / 1024 };
  } catch {
    const rss = process.memoryUsage().rss / MB;
    return { rssMB: rss, hwmMB: process.resourceUsage().maxRSS / 1024 };
  }
}

/** Resets VmHWM to the current RSS (Linux ≥ 4.0: "5" > /proc/self/clear_refs). Returns false where unsupported. */
export function resetPeakRss(): boolean {
  try {
    fs.writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

export function fmt(x: number, digits = 3): string {
  if (!Number.isFinite(x)) return 'n/a';
  const a = Math.abs(x);
  if (a >= 1000) return x.toFixed(0);
  if (a >= 100) return x.toFixed(Math.max(0, digits - 3));
  if (a >= 10) return x.toFixed(Math.max(0, digits - 2));
  if (a >= 1) return x.toFixed(Math.max(0, digits - 1));
  return x.toPrecision(digits);
}
