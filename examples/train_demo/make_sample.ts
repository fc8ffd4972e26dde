/**
 * Writes the shipped sample video (assets/sample-shapes.mp4) with the data generator and ffmpeg: example
 * `sample.index` of the held-out data set `sample.seed` (config.json), drawn as the training data is.
 *
 *   node tmp/examples/examples/train_demo/make_sample.js
 * Prints the scene and the answer expected to each question. Deterministic: same bytes every run.
 */
import { writeVideo } from '../../src/data/media';
import { makeExample, questionsFor } from '../../src/data/questions';
import { exampleOptions, readTrainConfig, sampleSpec } from './common';

async function main(): Promise<void> {
  const cfg = await readTrainConfig();
  const { seed, index, file } = sampleSpec(cfg);
  const ex = makeExample(seed, index, { ...exampleOptions(cfg), media: 'video' });
  await writeVideo(ex.frames, file);
  console.log(`wrote ${file}: ${JSON.stringify(ex.facts)}`);
  for (const q of questionsFor(ex.facts)) console.log(`  ${q.question} → ${q.answer}`);
}

main().catch((e) => {
  console.error(e instanceof Error ? `${e.name}: ${e.message}` : e);
  process.exit(1);
});
