/**
 * Interoperability with Python's huggingface_hub, in CI without Python: test/fixtures/hub/python_cache
 * was filled by huggingface_hub 2.4.0 from the local Hub of server.ts (reference/hub_interop.py):
 * snapshot_download(allow_patterns=...) for `main`, hf_hub_download per file for the tag `v1`. This
 * project must use it as it is, without a single request, and write the same tree listing Python does.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import { promises as fsp } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { resolveModel } from '../../src/hub';
import { fixtureRepos, HubServer, startHubServer, TESTER } from './server';

const PYTHON_CACHE = path.join(__dirname, '..', 'fixtures', 'hub', 'python_cache');
const STORAGE = `models--${TESTER.replace('/', '--')}`;

let server: HubServer;
let tmp: string;

beforeAll(async () => {
  server = await startHubServer(fixtureRepos());
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'hub-python-cache-'));
});
afterAll(async () => {
  await server.close();
  await fsp.rm(tmp, { recursive: true, force: true });
});

/** A private copy of the fixture (its symlinks kept as they are), so that no test can alter it. */
async function copyOfPythonCache(): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(tmp, 'cache-'));
  await fsp.cp(PYTHON_CACHE, dir, { recursive: true, verbatimSymlinks: true });
  return dir;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test('the fixture is a real huggingface_hub cache: relative symlinks into blobs/', async () => {
  const snapshot = path.join(PYTHON_CACHE, STORAGE, 'snapshots', server.commit(TESTER, 'main'));
  const link = await fsp.readlink(path.join(snapshot, 'model.safetensors'));
  expect(link).toBe(`../../blobs/${server.file(TESTER, 'main', 'model.safetensors').sha256}`);
});

test('a cache filled by huggingface_hub resolves, for main and for a tag, with zero requests', async () => {
  const cacheDir = await copyOfPythonCache();
  server.requests.length = 0;
  for (const [revision, files] of [
    ['main', ['config.json', 'generation_config.json', 'model.safetensors', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json']],
    ['v1', ['config.json', 'generation_config.json', 'model.safetensors']],
  ] as const) {
    const dir = await resolveModel(TESTER, { cacheDir, endpoint: server.endpoint, revision });
    expect(dir).toBe(path.join(cacheDir, STORAGE, 'snapshots', server.commit(TESTER, revision)));
    expect((await fsp.readdir(dir)).sort()).toEqual(files);
    for (const f of files) {
      // The bytes Python downloaded are the bytes the server serves for that revision.
      expect(sha256(await fsp.readFile(path.join(dir, f)))).toBe(server.file(TESTER, revision, f).sha256);
    }
  }
  // Offline works too, and nothing was asked of the Hub.
  expect(await resolveModel(TESTER, { cacheDir, offline: true, revision: 'v1' })).toContain(server.commit(TESTER, 'v1'));
  expect(server.requests).toEqual([]);
});

test('the repository listing this project writes is byte-identical to the one huggingface_hub wrote', async () => {
  const cacheDir = await fsp.mkdtemp(path.join(tmp, 'fresh-'));
  await resolveModel(TESTER, { cacheDir, endpoint: server.endpoint });
  const tree = path.join(STORAGE, 'trees', `${server.commit(TESTER, 'main')}.json`);
  const ours = await fsp.readFile(path.join(cacheDir, tree));
  const python = await fsp.readFile(path.join(PYTHON_CACHE, tree));
  expect(ours.equals(python)).toBe(true);
  // Same refs file (no trailing newline) and the same blob names.
  const ref = path.join(STORAGE, 'refs', 'main');
  expect(await fsp.readFile(path.join(cacheDir, ref), 'utf8')).toBe(await fsp.readFile(path.join(PYTHON_CACHE, ref), 'utf8'));
  const blobs = (root: string) => fs.readdirSync(path.join(root, STORAGE, 'blobs')).sort();
  const pythonMainBlobs = new Set(
    (await fsp.readdir(path.join(PYTHON_CACHE, STORAGE, 'snapshots', server.commit(TESTER, 'main')))).map((f) =>
      path.basename(fs.readlinkSync(path.join(PYTHON_CACHE, STORAGE, 'snapshots', server.commit(TESTER, 'main'), f))),
    ),
  );
  expect(blobs(cacheDir)).toEqual([...pythonMainBlobs].sort());
});
