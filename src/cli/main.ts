#!/usr/bin/env node
/** The `video-llava` command. User mistakes print one line and exit 1; only internal bugs show a stack. */
import { VideoLlavaError } from '../errors';
import { CONVERT_HELP, convertCommand } from './convert';
import { EVAL_HELP, evalCommand } from './eval';
import { FORWARD_HELP, forwardCommand } from './forward';
import { GENERATE_HELP, generateCommand } from './generate';
import { PARITY_HELP, parityCommand } from './parity';
import { PREPROCESS_HELP, preprocessCommand } from './preprocess';
import { WORKER_HELP, workerCommand } from './worker';
import { WEB_HELP, webCommand } from './web';

const HELP = `video-llava — Video-LLaVA on TensorFlow.js

Usage:
  video-llava generate --model DIR [--video F]... [--image F]... --prompt TEXT [--max-new-tokens N]
  video-llava forward --model DIR --inputs IN.safetensors --out OUT.safetensors [--hidden-states]
  video-llava parity [--fixtures DIR] [--model NAME]
  video-llava web [--port N]
  video-llava convert --model SRC --out DIR [--to hf|original]
  video-llava eval --model DIR --manifest IN.jsonl --output OUT.jsonl [--queue redis://HOST:PORT]
  video-llava worker --queue redis://HOST:PORT --model DIR
  video-llava <command> --help

Commands:
  generate     answer a prompt about videos and images (streams the answer, then a timing summary)
  forward      run one forward pass on tensors from a safetensors file, write logits (parity with Python)
  preprocess   run the processor on files and write input_ids / pixel values (parity with Python)
  parity       per-stage max differences from Python on the reference fixtures
  web          serve the demo page: the model answering in the browser (wasm, WebGL, WebGPU)
  convert      between the original Video-LLaVA/LanguageBind checkpoints and the Hugging Face layout
  eval         answer a manifest of questions (resumable; scores and a summary table), locally or on a queue
  worker       run eval items from a Redis queue (BullMQ) with a model loaded once

Every command takes --backend wasm|cpu|tensorflow (default wasm, or the VIDEO_LLAVA_BACKEND variable).
`;

type Command = (argv: string[], log: (line: string) => void) => Promise<void>;

const COMMANDS: Record<string, { run: Command; help: string }> = {
  generate: { run: generateCommand, help: GENERATE_HELP },
  forward: { run: forwardCommand, help: FORWARD_HELP },
  parity: { run: parityCommand, help: PARITY_HELP },
  preprocess: { run: preprocessCommand, help: PREPROCESS_HELP },
  web: { run: webCommand, help: WEB_HELP },
  convert: { run: convertCommand, help: CONVERT_HELP },
  eval: { run: evalCommand, help: EVAL_HELP },
  worker: { run: workerCommand, help: WORKER_HELP },
};

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  const log = (line: string) => process.stdout.write(line.endsWith('\n') ? line : `${line}\n`);
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    log(HELP);
    return name ? 0 : 1;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`video-llava: unknown command "${name}"; run video-llava --help\n`);
    return 1;
  }
  try {
    await command.run(rest, log);
    return 0;
  } catch (e) {
    if (e instanceof VideoLlavaError) {
      process.stderr.write(`video-llava ${name}: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(`video-llava: internal error: ${(e as Error).stack ?? e}\n`);
      process.exit(2);
    },
  );
}
