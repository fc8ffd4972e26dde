/**
 * The page side of benchmarks/browser.ts: loads a model over HTTP on one backend and times the benchmark stages
 * (../stages.ts, the same calls and inputs as the Node worker). Bundled and served by benchmarks/browser.ts.
 */
import * as lib from '../../src/web';
import type { PageBenchRequest, PageBenchResult } from '../protocol';
import { prepareStage, runPrepared } from '../stages';

async function run(req: PageBenchRequest): Promise<PageBenchResult> {
  lib.configureWasm({ prefix: new URL('/', location.href).href });
  await lib.setBackend(req.backend);
  const backend = await lib.describeBackend();
  const t0 = performance.now();
  const model = await lib.VideoLlavaForConditionalGeneration.fromPretrained(await lib.platform.modelFiles(req.model, { cache: null }));
  const loadMs = performance.now() - t0;
  const stages: Record<string, number[]> = {};
  const probes: Record<string, number> = {};
  try {
    for (const { key, stage } of req.stages) {
      const prepared = prepareStage(model, stage);
      try {
        await runPrepared(prepared, 0); // warm-up: shader compilation, weight upload, packing
        stages[key] = [];
        for (let i = 0; i < req.repeats; i++) {
          const r = await runPrepared(prepared, req.minMs);
          stages[key].push(r.ms);
          probes[key] = r.probe.absSum;
        }
      } finally {
        prepared.dispose();
      }
    }
  } finally {
    model.dispose();
  }
  return { backend, loadMs, stages, probes };
}

declare global {
  interface Window {
    bench: { run: typeof run };
  }
}

window.bench = { run };
