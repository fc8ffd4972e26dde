/** Shapes manifests for the evaluation tests: test/demo's held-out examples, asked the way its evaluation asks. */
import { writeShapesManifest } from '../../src/data/manifest';
import { ShapesExample, makeExample } from '../../src/data/questions';
import { exampleOptions, readTrainConfig } from '../../examples/train_demo/common';
import { heldOutQuestions } from '../../examples/train_demo/evaluate';

/** test/demo's held-out data-set seed. */
export const DEMO_TEST_SEED = 3;

export async function demoExamples(count: number, seed = DEMO_TEST_SEED): Promise<ShapesExample[]> {
  const cfg = await readTrainConfig();
  return Array.from({ length: count }, (_, i) => makeExample(seed, i, exampleOptions(cfg)));
}

/** Writes the examples' media and a manifest whose questions are phrased as examples/train_demo/evaluate.ts draws them. */
export async function demoManifest(dir: string, examples: ShapesExample[], maxItems?: number): Promise<{ manifest: string; items: number }> {
  return writeShapesManifest(dir, examples, { questions: (ex) => heldOutQuestions(ex, ex.seed), maxItems });
}
