/**
 * Fine-tuning example on fixture data: LLaVA stage 1 (only the multimodal projector trains) or, with
 * --lora, a PEFT-style LoRA on the decoder's q_proj and v_proj. Model: the tiny `tester` checkpoint;
 * data: the two labelled batches of test/fixtures/training/batch.safetensors (images, a video, left
 * padding, -100 on prompts and placeholders), accumulated into one step as a torch loop would.
 *
 * Run from the repository root:
 *   npx tsc -p tsconfig.json --outDir tmp/examples
 *   node tmp/examples/examples/finetune_projector.js [--lora] [--steps 40] [--lr 0.01] [--save DIR]
 * (VIDEO_LLAVA_BACKEND=cpu for the cpu backend; default wasm.) --save writes the trained model
 * (savePretrained) or, with --lora, the adapter (adapter_config.json + adapter_model.safetensors, loadable
 * with peft's PeftModel.from_pretrained).
 */
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { setBackend } from '../src/backend';
import { VideoLlavaForConditionalGeneration } from '../src/models/video_llava/modeling';
import { trainableParameters } from '../src/training/grad';
import { addLora } from '../src/training/lora';
import { AdamW, trainStep } from '../src/training/optimizer';
import { freeze, trainableSummary, unfreeze } from '../src/training/params';
import { saveLoraAdapter, savePretrained } from '../src/training/save';
import { SafetensorsFile } from '../src/weights/safetensors';

const ROOT = process.cwd();
const MODEL = path.join(ROOT, 'test/fixtures/models/tester');
const DATA = path.join(ROOT, 'test/fixtures/training/batch.safetensors');

interface Batch {
  inputIds: number[][];
  attentionMask: number[][];
  labels: number[][];
  images?: tf.Tensor4D;
  videos?: tf.Tensor5D;
}

function arg(name: string, fallback?: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

async function readBatch(file: SafetensorsFile, prefix: string): Promise<Batch> {
  const rows = async (name: string) => {
    const t = await file.readTensor(`${prefix}.${name}`);
    const r = t.arraySync() as number[][];
    t.dispose();
    return r;
  };
  const optional = async (name: string) => (file.has(`${prefix}.${name}`) ? file.readTensor(`${prefix}.${name}`) : undefined);
  return {
    inputIds: await rows('input_ids'),
    attentionMask: await rows('attention_mask'),
    labels: await rows('labels'),
    images: (await optional('pixel_values_images')) as tf.Tensor4D | undefined,
    videos: (await optional('pixel_values_videos')) as tf.Tensor5D | undefined,
  };
}

async function main(): Promise<void> {
  const backend = await setBackend();
  const lora = process.argv.includes('--lora');
  const steps = Number(arg('steps', '40'));
  const lr = Number(arg('lr', lora ? '0.005' : '0.01'));

  const model = await VideoLlavaForConditionalGeneration.fromPretrained(MODEL);
  if (lora) {
    addLora(model, { r: 4, lora_alpha: 8, target_modules: '.*language_model.*\\.(q_proj|v_proj)' }, 0);
  } else {
    freeze(model);
    unfreeze(model, 'model.multi_modal_projector');
  }
  console.log(`backend ${backend}; ${lora ? 'LoRA r=4 on the decoder q_proj/v_proj' : 'projector only'}; ${trainableSummary(model)}`);

  const data = await SafetensorsFile.open(DATA);
  const batches = [await readBatch(data, 'A'), await readBatch(data, 'B')];
  await data.close();

  const optimizer = new AdamW(trainableParameters(model), { lr, weightDecay: 0.01 });
  const lossOf = (b: Batch) => {
    const out = model.forward({ inputIds: b.inputIds, attentionMask: b.attentionMask, pixelValuesImages: b.images, pixelValuesVideos: b.videos, labels: b.labels });
    out.logits.dispose();
    return out.loss!;
  };
  const start = Date.now();
  for (let step = 1; step <= steps; step++) {
    const { loss, gradNorm } = trainStep(optimizer, batches, lossOf, { maxGradNorm: 1.0 });
    if (step === 1 || step % 5 === 0 || step === steps) {
      console.log(`step ${String(step).padStart(3)}  loss ${loss.toFixed(4)}  grad norm ${gradNorm!.toFixed(4)}  (${tf.memory().numTensors} tensors)`);
    }
  }
  console.log(`${steps} steps in ${((Date.now() - start) / 1000).toFixed(1)} s`);

  const save = arg('save');
  if (save) {
    if (lora) await saveLoraAdapter(model, save);
    else await savePretrained(model, save);
    console.log(`saved to ${save}`);
  }
  optimizer.dispose();
  for (const b of batches) tf.dispose([b.images, b.videos].filter((t) => t !== undefined) as tf.Tensor[]);
  model.dispose();
}

main().catch((e) => {
  console.error(e instanceof Error ? `${e.name}: ${e.message}` : e);
  process.exit(1);
});
