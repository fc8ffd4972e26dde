/**
 * `video-llava worker`: takes evaluation items from a Redis queue (filled by `video-llava eval --queue`),
 * answers them with a model loaded once, and stores the results in Redis for the producer to gather.
 */
import { setBackend } from '../backend';
import { intOption, parse, required } from './args';

export const WORKER_HELP = `video-llava worker --queue redis://HOST:PORT --model DIR [options]

Runs evaluation items from the queue that \`video-llava eval --queue\` fills, until stopped (Ctrl-C or SIGTERM:
the items it holds are finished first; a second signal quits at once and the queue hands them to another worker
once their lock expires). Start one per machine, or more on a machine with spare cores. Media paths in the
manifest must be readable here (same path on every machine, e.g. a shared file system).

  --queue URL             redis://[user:password@]host[:port][/db]
  --queue-name NAME       default video-llava-eval (the producer's)
  --model DIR|ID          the model this worker loads once
  --batch-size N          items per generate call (default 4 for small models, 1 at 7B; see eval --help)
  --concurrency N         jobs held at once, each up to 8 questions about one video or image (default
                          2 × batch size)
  --decoders N            videos decoded at once (default 2)
  --lock-ms MS            a job's lock, renewed while it runs (by a thread of its own: a long forward does not
                          stop it); a worker gone this long is taken for dead and its jobs go to another
                          (default 60000)
  --stalled-ms MS         how often locks are checked (default 30000)
  --max-stalled N         times a job is handed on after losing its worker before it fails with its error
                          (default 2)
  --backend NAME          wasm (default), cpu or tensorflow
  --quiet                 no line per item
`;

const OPTIONS = {
  queue: { type: 'string' },
  'queue-name': { type: 'string' },
  model: { type: 'string' },
  'batch-size': { type: 'string' },
  concurrency: { type: 'string' },
  decoders: { type: 'string' },
  'lock-ms': { type: 'string' },
  'stalled-ms': { type: 'string' },
  'max-stalled': { type: 'string' },
  backend: { type: 'string' },
  quiet: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export async function workerCommand(argv: string[], log: (line: string) => void): Promise<void> {
  const args = parse(argv, OPTIONS);
  if (args.help) return log(WORKER_HELP);
  const url = required(args, 'queue');
  const model = required(args, 'model');
  const opt = (name: string, min: number) => (args[name] === undefined ? undefined : intOption(args, name, min, min));
  const options = {
    batchSize: opt('batch-size', 1),
    concurrency: opt('concurrency', 1),
    decoders: opt('decoders', 1),
    lockMs: opt('lock-ms', 100),
    stalledMs: opt('stalled-ms', 100),
    maxStalled: args['max-stalled'] === undefined ? undefined : intOption(args, 'max-stalled', 0, 0),
  };
  await setBackend(args.backend as string | undefined);
  const controller = new AbortController();
  const stop = () => {
    if (controller.signal.aborted) process.exit(130);
    process.stderr.write('worker: finishing the items it holds (signal again to quit now)\n');
    controller.abort();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  const quiet = args.quiet === true;
  let lastError = 0;
  try {
    const { runWorker } = await import('../eval/queue');
    const { processed } = await runWorker({
      ...options,
      queue: { url, name: args['queue-name'] as string | undefined },
      model,
      signal: controller.signal,
      onEvent: (e) => {
        if (e.kind === 'ready') log(`worker ${e.name}: ready, waiting for items`);
        else if (e.kind === 'error' && Date.now() - lastError > 10_000) {
          lastError = Date.now();
          process.stderr.write(`worker: queue error (retrying): ${e.message}\n`);
        } else if (!quiet && e.kind === 'start') log(`start ${e.id}`);
        else if (!quiet && e.kind === 'done') log(`done ${e.id} ${e.ms} ms${e.error ? ` (error: ${e.error})` : ''}`);
      },
    });
    log(`worker: stopped after ${processed} item(s)`);
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
