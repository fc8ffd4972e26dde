/**
 * `video-llava eval`: a manifest of questions about videos and images through a model, resumable; locally or
 * through workers on a Redis queue. `--summary FILE` prints the table of a results file.
 */
import { setBackend } from '../backend';
import { InputError } from '../errors';
import type { EvalProgress, EvalRunResult } from '../eval/run';
import { evaluate, summarizeFile } from '../eval/run';
import { summaryTable } from '../eval/score';
import { SAMPLING_OPTIONS, intOption, parse, required, samplingOptions } from './args';

export const EVAL_HELP = `video-llava eval --model DIR --manifest IN.jsonl --output OUT.jsonl [options]
video-llava eval --queue redis://HOST:PORT --manifest IN.jsonl --output OUT.jsonl [options]
video-llava eval --summary OUT.jsonl

Answers every item of a manifest and writes one JSON line per item to the output, which is the run's state:
run the same command again after a crash or Ctrl-C and it continues where it stopped (no item twice, no
finished item lost). Bad items (a missing or unreadable video, a prompt too long for the model) get their error
on their line and the run goes on. Ends with accuracy per question type where the manifest has answers.

Manifest: one JSON object a line: "id", "video" and/or "image" (a path or a list; relative to the manifest),
"question" (or "conversation": chat messages), optional "answer" and "type". Example line:
  {"id": "q1", "video": "clips/a.mp4", "question": "What is the man doing?", "answer": "cooking", "type": "what"}

  --model DIR|ID          checkpoint directory or Hub id (as for generate); not with --queue
  --manifest FILE         the items (JSON Lines)
  --output FILE           results (JSON Lines), created or resumed
  --max-new-tokens N      default 60
  --num-frames N          frames per video (default 8)
  --prefill-chunk N       prompt through the decoder N positions at a time (less memory, same answers)
  --do-sample, --temperature X, --top-k N, --top-p X, --seed N, --repetition-penalty X
  --batch-size N          items per generate call: their vision features and decode steps run together
                          (default 4 for small models, 1 where four full-context KV caches would
                          pass 512 MiB, e.g. at 7B)
  --decoders N            videos decoded at once, ahead of the model (default 2)
  --retry-errors          run the items whose line has an error again (their lines are replaced)
  --queue URL             put the items on a BullMQ queue in Redis and gather what the workers
                          (video-llava worker) answer into --output
  --queue-name NAME       queue name (default video-llava-eval), the workers' too
  --summary FILE          print the summary table of a results file and exit
  --backend NAME          wasm (default), cpu or tensorflow
  --quiet                 no progress line
`;

const OPTIONS = {
  model: { type: 'string' },
  manifest: { type: 'string' },
  output: { type: 'string' },
  'max-new-tokens': { type: 'string' },
  'num-frames': { type: 'string' },
  'prefill-chunk': { type: 'string' },
  ...SAMPLING_OPTIONS,
  'batch-size': { type: 'string' },
  decoders: { type: 'string' },
  'retry-errors': { type: 'boolean' },
  queue: { type: 'string' },
  'queue-name': { type: 'string' },
  summary: { type: 'string' },
  backend: { type: 'string' },
  quiet: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export async function evalCommand(argv: string[], log: (line: string) => void): Promise<void> {
  const args = parse(argv, OPTIONS);
  if (args.help) return log(EVAL_HELP);
  if (typeof args.summary === 'string') {
    const { summary, droppedBytes } = summarizeFile(args.summary);
    if (droppedBytes > 0) process.stderr.write(`${args.summary}: its last line is torn (${droppedBytes} bytes, not counted); a resumed run cuts it off\n`);
    return log(summaryTable(summary));
  }
  const manifest = required(args, 'manifest');
  const output = required(args, 'output');
  const generation = {
    maxNewTokens: intOption(args, 'max-new-tokens', 60, 1),
    numFrames: intOption(args, 'num-frames', 8, 1),
    prefillChunkSize: args['prefill-chunk'] === undefined ? undefined : intOption(args, 'prefill-chunk', 0, 1),
    ...samplingOptions(args),
  };
  const controller = new AbortController();
  const onSignal = () => {
    if (controller.signal.aborted) process.exit(130); // second Ctrl-C: now
    process.stderr.write('\nstopping after the items in flight (Ctrl-C again to quit now); rerun the same command to resume\n');
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  const progress = args.quiet ? undefined : progressLine();
  const common = {
    manifest,
    output,
    generation,
    retryErrors: args['retry-errors'] === true,
    signal: controller.signal,
    onProgress: progress?.update,
    onResume: (r: { finished: number; pending: number; droppedBytes: number; duplicates: number; foreign: number }) => {
      const notes = [
        r.finished > 0 ? `resuming: ${r.finished} item(s) already done, ${r.pending} to go` : '',
        r.droppedBytes > 0 ? `cut off a torn last line (${r.droppedBytes} bytes); its item runs again` : '',
        r.duplicates > 0 ? `${r.duplicates} id(s) have more than one line; the first counts` : '',
        r.foreign > 0 ? `${r.foreign} line(s) are for ids not in this manifest (ignored)` : '',
      ].filter(Boolean);
      for (const n of notes) process.stderr.write(`${output}: ${n}\n`);
    },
  };
  let result: EvalRunResult;
  try {
    if (typeof args.queue === 'string') {
      if (args.model !== undefined) throw new InputError('--model', 'a queue run uses the model of each worker (video-llava worker --model …); leave it out here');
      for (const local of ['batch-size', 'decoders', 'backend'] as const) {
        if (args[local] !== undefined) throw new InputError(`--${local}`, 'is a worker setting in a queue run (video-llava worker --help)');
      }
      const { evaluateOnQueue } = await import('../eval/queue');
      result = await evaluateOnQueue({ ...common, queue: { url: args.queue, name: args['queue-name'] as string | undefined } });
    } else {
      if (args['queue-name'] !== undefined) throw new InputError('--queue-name', 'needs --queue');
      const model = required(args, 'model');
      await setBackend(args.backend as string | undefined);
      result = await evaluate({ ...common, model, batchSize: args['batch-size'] === undefined ? undefined : intOption(args, 'batch-size', 1, 1), decoders: intOption(args, 'decoders', 2, 1) });
    }
  } finally {
    process.off('SIGINT', onSignal);
    progress?.done();
  }
  log(summaryTable(result.summary));
  const s = result.summary.total;
  process.stderr.write(
    `${output}: ${s.items} item(s) with a result (${result.ranNow} now, ${result.resumed} before), ${s.errors} error(s), ` +
      `${(result.elapsedMs / 1000).toFixed(1)} s${result.aborted ? ' · stopped early: rerun to finish' : ''}\n`,
  );
}

const clock = (ms: number) => {
  const s = Math.round(ms / 1000);
  return s >= 3600 ? `${Math.floor(s / 3600)}:${String(Math.floor(s / 60) % 60).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}` : `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
};

/** One progress line on stderr: redrawn in place on a terminal, else a line every 10 s. */
function progressLine(stream: NodeJS.WriteStream = process.stderr): { update: (p: EvalProgress) => void; done: () => void } {
  const tty = stream.isTTY === true;
  let last = 0;
  let drawn = false;
  return {
    update(p) {
      const now = Date.now();
      if (now - last < (tty ? 200 : 10_000) && p.done < p.total) return;
      last = now;
      const rate = p.rate ? `${p.rate.toFixed(2)} items/s` : '';
      const eta = p.etaMs !== undefined && Number.isFinite(p.etaMs) ? `ETA ${clock(p.etaMs)}` : '';
      const text = [`eval ${p.done}/${p.total} (${((100 * p.done) / p.total).toFixed(1)}%)`, rate, eta, `errors ${p.errors}`].filter(Boolean).join(' · ');
      stream.write(tty ? `\r${text}\x1b[K` : `${text}\n`);
      drawn = tty;
    },
    done() {
      if (drawn) stream.write('\n');
    },
  };
}
