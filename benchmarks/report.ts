/** Renders benchmarks/results/latest.json as the console table and as latest.md. */
import { ConfigResult, Results, StageResult } from './results';
import { Summary, fmt } from './stats';

const MB = 1024 * 1024;

function cell(s: Summary | undefined, withRange: boolean): string {
  if (!s || !Number.isFinite(s.median)) return 'n/a';
  return withRange ? `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})` : fmt(s.median);
}

function ratio(r: number | undefined): string {
  return r === undefined || !Number.isFinite(r) ? '' : ` ×${fmt(r, 2)}`;
}

function stageLabel(s: StageResult): string {
  if (s.kind === 'vision') return `vision tower (${s.frames} frame${s.frames === 1 ? '' : 's'})`;
  if (s.kind === 'projector') return `projector (${s.frames} frame${s.frames === 1 ? '' : 's'})`;
  if (s.kind === 'prefill') return `prefill (${s.tokens} tokens)`;
  return `decode (cache ${s.past})`;
}

function variantNames(r: Results): string[] {
  return r.meta.variants.map((v) => v.name);
}

function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n') + '\n';
}

/** Plain-text table with aligned columns. */
function textTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 3 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n') + '\n';
}

function mainRows(r: Results, withRange: boolean): { header: string[]; rows: string[][] } {
  const names = variantNames(r);
  const header = ['config', 'stage', 'unit', ...names];
  const rows: string[][] = [];
  for (const c of r.configs) {
    for (const s of c.stages) {
      rows.push([c.name, stageLabel(s), s.unit, ...names.map((n) => cell(s.variants[n]?.value, withRange) + ratio(s.variants[n]?.tfjsTimeRatio))]);
    }
    const tfjsLoad = c.load['tfjs-wasm'];
    const loadCell = (n: string) => {
      const l = c.load[n.startsWith('torch') ? 'torch' : n];
      if (!l) return 'n/a';
      const rr = tfjsLoad && n !== 'tfjs-wasm' ? ` ×${fmt(tfjsLoad.ms / l.ms, 2)}` : '';
      return `${fmt(l.mbPerS)}${rr}`;
    };
    rows.push([c.name, `load ${fmt(c.checkpoint.bytes / MB)} MiB (1 run)`, 'MB/s', ...names.map(loadCell)]);
    const peakCell = (n: string) => {
      const l = c.load[n.startsWith('torch') ? 'torch' : n];
      return l ? `${fmt(l.peakOverWeights, 2)}×` : 'n/a';
    };
    rows.push([c.name, 'load peak RSS growth / weights', 'ratio', ...names.map(peakCell)]);
  }
  return { header, rows };
}

export function renderConsole(r: Results): string {
  const { header, rows } = mainRows(r, false);
  let out = `\nVideo-LLaVA benchmarks — ${r.meta.date.slice(0, 16)} — ${r.meta.host.cpu}, ${r.meta.host.cores} cores — load avg ${r.meta.loadavgStart.map((x) => x.toFixed(1)).join('/')} → ${r.meta.loadavgEnd.map((x) => x.toFixed(1)).join('/')}\n`;
  out += `medians of ${r.meta.repeats} repeats; ×r = tfjs-wasm time / that column's time (r > 1: tfjs slower)\n\n`;
  out += textTable(header, rows);
  if (r.extrapolation) {
    const names = Object.keys(r.extrapolation.rows[0]?.values ?? {});
    out += '\nFull Video-LLaVA-7B, extrapolated from the 7B-width slice:\n';
    out += textTable(['item', 'unit', '', ...names], r.extrapolation.rows.map((row) => [row.item, row.unit, '', ...names.map((n) => fmt(row.values[n]))]));
  }
  out += `\nnative-BLAS column: ${r.meta.nativeColumn}\n`;
  for (const c of r.configs) for (const e of c.errors) out += `error in ${c.name}: ${e}\n`;
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Markdown

function memorySection(r: Results): string {
  let out = '## Loading and memory\n\n';
  const rows: string[][] = [];
  for (const c of r.configs) {
    for (const [worker, l] of Object.entries(c.load)) {
      const stats = c.workerStats[worker];
      rows.push([
        c.name,
        worker,
        fmt(c.weightBytes / MB),
        l.fromPretrainedMs === undefined ? fmt(l.ms / 1000) : `${fmt(l.ms / 1000)} (from_pretrained ${fmt(l.fromPretrainedMs / 1000)} + page-in ${fmt((l.touchMs ?? 0) / 1000)})`,
        fmt(l.mbPerS),
        fmt(l.rssBeforeMB),
        fmt(l.rssPeakMB),
        fmt(l.rssAfterMB),
        `${fmt(l.peakOverWeights, 3)}×`,
        l.wasmHeapMB === undefined ? '' : fmt(l.wasmHeapMB),
        l.tensorMB === undefined ? '' : fmt(l.tensorMB),
        stats ? fmt(stats.maxRssMB) : 'n/a',
      ]);
    }
  }
  out += table(
    ['config', 'worker', 'fp32 weights MiB', 'load s', 'MB/s', 'RSS before MiB', 'RSS peak during load', 'RSS after', '(peak − before) / weights', 'wasm heap MiB', 'tf tensors MiB', 'worker peak RSS (whole run)'],
    rows,
  );
  out += '\nPer stage: peak live tensor bytes above the weights during one call (tf.profile, tfjs) and peak RSS growth during one call (VmHWM reset before it), MiB:\n\n';
  const srows: string[][] = [];
  for (const c of r.configs) {
    for (const s of c.stages) {
      const t = s.variants['tfjs-wasm']?.memory;
      const p = Object.entries(s.variants).find(([n]) => n.startsWith('torch'))?.[1]?.memory;
      srows.push([c.name, stageLabel(s), t?.peakTensorMB === undefined ? 'n/a' : fmt(t.peakTensorMB), t ? fmt(t.stagePeakRssDeltaMB) : 'n/a', t?.wasmHeapMB === undefined ? 'n/a' : fmt(t.wasmHeapMB), p ? fmt(p.stagePeakRssDeltaMB) : 'n/a']);
    }
  }
  out += table(['config', 'stage', 'tfjs peak tensors above weights', 'tfjs RSS growth', 'wasm heap after', 'torch RSS growth'], srows);
  return out + '\n';
}

function rooflineSection(c: ConfigResult): string {
  if (c.roofline.length === 0) return '';
  const cols = Object.keys(c.roofline[0].gflops);
  let out = `### ${c.name}: GEMM rates (GFLOPS, best of the timed repeats)\n\n`;
  out += table(
    ['product', 'batch×m×k×n (T: right operand transposed)', 'GFLOP', ...cols],
    c.roofline.map((row) => [row.label, row.shape, fmt(row.flops / 1e9), ...cols.map((k) => (row.gflops[k] === null || row.gflops[k] === undefined ? 'n/a' : fmt(row.gflops[k]!)))]),
  );
  out += `\n### ${c.name}: stages against their GEMMs\n\n`;
  out +=
    "Achieved = analytic FLOPs / median time. GEMM-bound = Σ over the stage's products of (FLOPs / measured rate of that shape in the column above): the time the stage would take doing nothing but its matmuls. Efficiency = GEMM-bound / actual time of the matching column. tfjs-model is each product as the model issues it on stock wasm (Linear weights stored [in, out]; attention one product per head where src/layers/attention.ts does so).\n\n";
  const matching: Record<string, string> = { 'tfjs-model': 'tfjs-wasm', tensorflow: 'tfjs-tensorflow', 'torch-1t': 'torch-1t-eager', 'torch-2t': 'torch-2t-eager' };
  for (const col of cols) if (col.startsWith('native')) matching[col] = `tfjs-wasm+${col}`;
  const header = ['stage', 'GFLOP'];
  for (const col of cols) {
    const v = matching[col];
    header.push(v ? `${col}: achieved GFLOPS / ms / GEMM-bound ms / efficiency` : `${col}: GEMM-bound ms`);
  }
  const rows = c.stages.map((s) => {
    const b = s.gemmBound?.ms ?? {};
    const cells = [stageLabel(s), fmt(s.flops / 1e9)];
    for (const col of cols) {
      const v = matching[col] ? s.variants[matching[col]] : undefined;
      if (!matching[col]) cells.push(fmt(b[col]));
      else if (!v) cells.push('n/a');
      else cells.push(`${fmt(v.gflops)} / ${fmt(v.msPerCall.median)} / ${fmt(b[col])} / ${fmt((100 * b[col]) / v.msPerCall.median, 3)} %`);
    }
    return cells;
  });
  out += table(header, rows);
  return out + '\n';
}

function detailSection(c: ConfigResult, names: string[]): string {
  let out = `### ${c.name}: ms per call, achieved GFLOPS, agreement with tfjs\n\n`;
  const rows: string[][] = [];
  for (const s of c.stages) {
    for (const n of names) {
      const v = s.variants[n];
      if (!v) continue;
      rows.push([
        stageLabel(s),
        n,
        cell(v.msPerCall, true),
        String(v.iters),
        fmt(v.gflops),
        v.tfjsTimeRatio === undefined ? '' : fmt(v.tfjsTimeRatio, 3),
        v.agreement ? `${v.agreement.relAbsSum.toExponential(1)} / ${v.agreement.maxHeadDiff.toExponential(1)}` : '',
      ]);
    }
  }
  out += table(['stage', 'column', 'ms per call median (min–max)', 'inner iters', 'GFLOPS', 'tfjs time / this', 'rel. Δ Σ|y| / max |Δ| first 8'], rows);
  return out + '\n';
}

type Obj = Record<string, unknown>;
const num = (o: unknown, k: string) => Number((o as Obj | undefined)?.[k]);

function prefillRealLines(e: Record<string, Obj | undefined>): string {
  const tfjs = e.prefillRealLengthTfjs ?? {};
  const torch = e.prefillRealLengthTorch ?? {};
  if (Object.keys(tfjs).length === 0 && Object.keys(torch).length === 0) return '';
  let out = '\n**One prefill of the real 2074-token video prompt through the slice** (1 Llama-7B layer + logits for the last position; each tfjs run in a fresh process that first loads the slice):\n\n';
  const rows: string[][] = [];
  for (const [name, r] of Object.entries(tfjs)) {
    const x = r as Obj;
    if (name === 'skipped') {
      rows.push(['tfjs', 'skipped', String(x), '', '', '']);
      continue;
    }
    const run = x.run as Obj | undefined;
    const mem = x.memory as Obj | undefined;
    const load = x.load as Obj | undefined;
    rows.push([
      name,
      x.error ? `failed: ${String(x.error).slice(0, 160)}` : 'ok',
      run ? fmt(num(run, 'ms')) : 'n/a',
      mem ? fmt(num(mem, 'peakTensorMB')) : 'n/a',
      load ? fmt(num(load, 'tensorMB')) : 'n/a',
      mem?.wasmHeapMB !== undefined ? fmt(num(mem, 'wasmHeapMB')) : 'n/a',
    ]);
  }
  for (const [name, r] of Object.entries(torch)) rows.push([name, 'ok', fmt(num(r, 'ms')), `RSS growth ${fmt(num(r, 'stagePeakRssDeltaMB'))}`, '', '']);
  out += table(['column', 'outcome', 'ms', 'peak tensors above weights MiB', 'weights MiB', 'wasm heap MiB'], rows);
  return out;
}

function experimentsSection(r: Results): string {
  const e = r.experiments as Record<string, Obj | undefined>;
  if (Object.keys(e).length === 0) return '';
  let out = '## Memory experiments (numbers behind running the 7B on a 24 GB machine)\n\n';
  const heap = e.heapCeiling;
  if (heap && heap.tensors !== undefined) {
    out += `- **wasm heap ceiling** (fresh process): ${heap.tensors} tensors of 64 MiB = ${fmt(num(heap, 'tensorBytes') / MB)} MiB allocate (heap ${fmt(num(heap, 'wasmHeapMB'))} MiB). `;
    out += heap.nullAddressTensor === null ? 'The next allocation fails cleanly' : `The next one is given address 0 (malloc failed, unchecked) and its data overwrites the start of the heap: the first tensor now begins with ${fmt(num(heap, 'firstTensorFirstValue'))} instead of 1, and no error is raised`;
    out += heap.nullAddressTensor === null ? ` (\`${String(heap.error)}\`).\n` : '.\n';
  }
  const pack = e.xnnpackPacking;
  if (pack && !pack.error) {
    out += `- **XNNPACK packing** (fresh process): a ${fmt(num(pack, 'weightMB'))} MiB weight used by the fast non-transposed matmul grows the wasm heap from ${fmt(num(pack, 'heapAfterWeightMB'))} to ${fmt(num(pack, 'heapAfterFirstFastMatmulMB'))} MiB on first use (a packed copy, kept while the weight lives; first call ${fmt(num(pack, 'firstFastMatmulMs'))} ms, then ${fmt(num(pack, 'secondFastMatmulMs'))} ms); the model's transposed layout adds nothing beyond its own copy (${fmt(num(pack, 'heapAfterTransposedCopyMB'))} → ${fmt(num(pack, 'heapAfterTransposedMatmulMB'))} MiB).\n`;
  }
  const stream = e.streamDecoderLayer;
  if (stream && !stream.error) out += `- **streaming one Llama-7B decoder layer** from the checkpoint into tfjs tensors (${fmt(num(stream, 'bytes') / MB)} MiB, ${stream.tensors} tensors, warm page cache): ${(stream.ms as number[]).map((x) => fmt(x)).join(', ')} ms → ${fmt(num(stream, 'mbPerS'))} MiB/s.\n`;
  const disk = e.diskReadODirect;
  if (disk && !disk.error) out += `- **disk read bypassing the page cache** (O_DIRECT, ${fmt(num(disk, 'bytes') / MB)} MiB of the checkpoint): ${fmt(num(disk, 'mbPerS'))} MiB/s.\n`;
  else if (disk) out += `- disk read with O_DIRECT: ${String(disk.error)}\n`;
  const w16 = e.widen16;
  if (w16 && !w16.error) out += `- **widening 16-bit weights to float32 in JS** (the loader's decoders): F16 ${fmt(num(w16, 'f16MValuesPerS'))} M values/s, BF16 ${fmt(num(w16, 'bf16MValuesPerS'))} M values/s.\n`;
  const q = e.int8DequantMatmul as { rows?: Obj[]; error?: string } | undefined;
  if (q?.rows) {
    out += '\n**int8 weights, dequantized on the fly** (per-row absmax scales). JS widens the int8 rows to float32, either in their own [out, in] order (contiguous) or transposed into [in, out] (the layout the fast non-transposed wasm matmul takes), uploads the [in, out] buffer and multiplies; against the resident float32 weight multiplied the way the model does it today (x·Wᵀ, stock wasm):\n\n';
    out += table(
      ['matrix', 'shape [out, in]', 'per layer', 'tokens', 'widen contiguous ms', 'widen to [in, out] ms', 'upload ms', 'matmul x·W ms', 'int8 path total ms', 'fp32 x·Wᵀ ms (model today)', 'rel. max error'],
      q.rows.map((x) => [
        String(x.label),
        `[${(x.shape as number[]).join(', ')}]`,
        String(x.count),
        String(x.tokens),
        fmt(num(x, 'widenContiguousMs')),
        fmt(num(x, 'widenMs')),
        fmt(num(x, 'uploadMs')),
        fmt(num(x, 'matmulPretransposedMs')),
        fmt(num(x, 'int8PathMs')),
        fmt(num(x, 'matmulModelLayoutMs')),
        num(x, 'relMaxError').toExponential(1),
      ]),
    );
  } else if (q?.error) out += `- int8 experiment failed: ${q.error}\n`;
  out += prefillRealLines(e);
  return out + '\n';
}

export function renderMarkdown(r: Results): string {
  const names = variantNames(r);
  let out = `# Video-LLaVA benchmarks: tfjs against PyTorch\n\n`;
  out += `- date: ${r.meta.date}; duration ${fmt(r.meta.durationS)} s\n`;
  out += `- host: ${r.meta.host.cpu}, ${r.meta.host.cores} cores, ${fmt(r.meta.host.memGB)} GiB, ${r.meta.host.os}\n`;
  out += `- load average at start ${r.meta.loadavgStart.map((x) => x.toFixed(2)).join(' / ')}, at end ${r.meta.loadavgEnd.map((x) => x.toFixed(2)).join(' / ')} (1/5/15 min; above the core count means other work competed)\n`;
  const first = r.configs[0];
  if (first) {
    for (const [w, h] of Object.entries(first.hellos)) out += `- ${w}: ${h.impl} ${Object.entries(h.versions).map(([k, v]) => `${k} ${v}`).join(', ')}\n`;
  }
  out += `- native-BLAS column: ${r.meta.nativeColumn}\n`;
  out += `- ${r.meta.warmup} warm-up and ${r.meta.repeats} timed repeats per column, alternating between columns; a repeat loops the call until it has run ≥ ${r.meta.minMs} ms and reports the mean per call\n`;
  out += `- arguments: \`${r.meta.args.join(' ') || '(defaults)'}\`\n\n`;
  out += '## Main table\n\n';
  out += 'Median (min–max) over the repeats. ×r after a PyTorch value = tfjs-wasm time / that column\'s time (r > 1: tfjs is r times slower). ms/frame: per video frame through the whole tower (or the projector); tokens/s: prompt tokens per second for prefill, generated tokens per second for decode. Load: one run per worker, warm page cache.\n\n';
  const { header, rows } = mainRows(r, true);
  out += table(header, rows) + '\n';
  for (const c of r.configs) {
    out += `- **${c.name}**: ${c.description}; ${fmt(c.params.total / 1e6)} M parameters (${fmt(c.weightBytes / MB)} MiB float32)\n`;
  }
  out += '\n';
  if (r.extrapolation) {
    const en = Object.keys(r.extrapolation.rows[0]?.values ?? {});
    out += '## Extrapolation to the full Video-LLaVA-7B\n\n';
    out += r.extrapolation.assumptions.map((a) => `- ${a}`).join('\n') + '\n\n';
    out += table(['item', 'unit', ...en], r.extrapolation.rows.map((row) => [row.item, row.unit, ...en.map((n) => fmt(row.values[n]))])) + '\n';
  }
  out += memorySection(r);
  out += experimentsSection(r);
  out += '## Rooflines\n\n';
  for (const c of r.configs) out += rooflineSection(c);
  out += '## Details\n\n';
  for (const c of r.configs) out += detailSection(c, names);
  const errors = r.configs.flatMap((c) => c.errors.map((e) => `- ${c.name}: ${e}`));
  if (errors.length) out += `## Errors\n\n${errors.join('\n')}\n`;
  return out;
}
