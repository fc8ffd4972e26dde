/**
 * `video-llava web`: serves the demo page (dist/web, built by `npm run build:web`) with the shipped trained model and
 * sample video, cross-origin isolated (wasm threads), on loopback, until Ctrl-C.
 */
import * as fs from 'fs';
import * as path from 'path';
import { InputError } from '../errors';
import { intOption, parse } from './args';
import { startWebServer } from './web_server';

export const WEB_HELP = `video-llava web [--port N] [--host ADDR] [--model DIR]

Serves the demo page: Video-LLaVA answering questions about a video or an image inside the browser (the same code
as this command line, on tfjs wasm / WebGL / WebGPU). Open the printed address in a browser.

  --port N        default 8080 (0: any free port)
  --host ADDR     default 127.0.0.1 (this machine only)
  --model DIR     another model folder (served at /model/ and opened by the page); default the shipped trained
                  model (assets/trained-model)

The page keeps the model in the browser's Cache Storage: a second visit loads without the network.
`;

const OPTIONS = {
  port: { type: 'string' },
  host: { type: 'string' },
  model: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** The package root, from src/cli or dist/cli alike. */
export const PACKAGE_ROOT = path.join(__dirname, '..', '..');

/** What the page serves: the build, the shipped assets, and optionally another model at /model/. */
export function webMounts(model?: string): Record<string, string> {
  const web = path.join(PACKAGE_ROOT, 'dist', 'web');
  if (!fs.existsSync(path.join(web, 'index.html'))) {
    throw new InputError('web', `the browser build is missing (${web}): run npm run build:web`);
  }
  const mounts: Record<string, string> = { '/': web, '/assets/': path.join(PACKAGE_ROOT, 'assets') };
  if (model !== undefined) {
    if (!fs.statSync(model, { throwIfNoEntry: false })?.isDirectory()) throw new InputError('--model', `${model} is not a directory`);
    mounts['/model/'] = model;
  }
  return mounts;
}

export async function webCommand(argv: string[], log: (line: string) => void): Promise<void> {
  const args = parse(argv, OPTIONS);
  if (args.help) return log(WEB_HELP);
  const model = args.model as string | undefined;
  const server = await startWebServer({ mounts: webMounts(model), host: (args.host as string | undefined) ?? '127.0.0.1', port: intOption(args, 'port', 8080) });
  log(`video-llava web: open ${server.url}${model ? '?model=/model/' : ''}  (Ctrl-C stops it)`);
  await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
  await server.close();
}
