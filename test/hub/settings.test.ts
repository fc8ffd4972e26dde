/**
 * Cache location, token and offline flag from options and environment, with huggingface_hub's
 * precedence (constants.py, utils/_auth.py); allowPatterns matching as its filter_repo_objects.
 */
import { promises as fsp } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { fnmatch } from '../../src/hub/resolve';
import { hubCacheDir, hubSettings, hubToken } from '../../src/hub/settings';

test('cache dir: HF_HUB_CACHE, then HUGGINGFACE_HUB_CACHE, then $HF_HOME/hub, then XDG, then ~', () => {
  const home = os.homedir();
  expect(hubCacheDir({})).toBe(path.join(home, '.cache', 'huggingface', 'hub'));
  expect(hubCacheDir({ XDG_CACHE_HOME: '/xdg' })).toBe('/xdg/huggingface/hub');
  expect(hubCacheDir({ XDG_CACHE_HOME: '/xdg', HF_HOME: '/hf' })).toBe('/hf/hub');
  expect(hubCacheDir({ HF_HOME: '/hf', HUGGINGFACE_HUB_CACHE: '/legacy' })).toBe('/legacy');
  expect(hubCacheDir({ HF_HOME: '/hf', HUGGINGFACE_HUB_CACHE: '/legacy', HF_HUB_CACHE: '/new' })).toBe('/new');
  // expanduser and expandvars, as Python applies them.
  expect(hubCacheDir({ HF_HUB_CACHE: '~/models' })).toBe(path.join(home, 'models'));
  expect(hubCacheDir({ HF_HUB_CACHE: '$DATA/hub', DATA: '/data' })).toBe('/data/hub');
  expect(hubCacheDir({ HF_HUB_CACHE: '${UNSET_VAR}/hub' })).toBe('${UNSET_VAR}/hub');
});

test('token: option, then HF_TOKEN, then HUGGING_FACE_HUB_TOKEN, then the token file', async () => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'hub-token-'));
  try {
    await fsp.writeFile(path.join(dir, 'token'), 'hf_from_file\n');
    expect(hubToken({ HF_HOME: dir })).toBe('hf_from_file');
    expect(hubToken({ HF_HOME: dir, HUGGING_FACE_HUB_TOKEN: 'hf_legacy' })).toBe('hf_legacy');
    expect(hubToken({ HF_HOME: dir, HUGGING_FACE_HUB_TOKEN: 'hf_legacy', HF_TOKEN: 'hf_env' })).toBe('hf_env');
    expect(hubToken({ HF_HOME: path.join(dir, 'none') })).toBeUndefined();
    expect(hubToken({ HF_TOKEN_PATH: path.join(dir, 'token') })).toBe('hf_from_file');
    expect(hubSettings({ token: 'hf_option' }, { HF_TOKEN: 'hf_env' }).token).toBe('hf_option');
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test('offline: HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE in 1/ON/YES/TRUE, unless the option says otherwise', () => {
  for (const v of ['1', 'on', 'YES', 'True']) expect(hubSettings({}, { HF_HUB_OFFLINE: v }).offline).toBe(true);
  for (const v of ['0', 'false', '']) expect(hubSettings({}, { HF_HUB_OFFLINE: v }).offline).toBe(false);
  expect(hubSettings({}, { TRANSFORMERS_OFFLINE: '1' }).offline).toBe(true);
  expect(hubSettings({ offline: false }, { HF_HUB_OFFLINE: '1' }).offline).toBe(false);
  expect(hubSettings({}, { HF_ENDPOINT: 'https://mirror.example/' }).endpoint).toBe('https://mirror.example');
  expect(hubSettings({}, {}).endpoint).toBe('https://huggingface.co');
});

test('allowPatterns match as fnmatch.fnmatchcase: * crosses "/", ?, [seq], [!seq], "dir/"', () => {
  expect(fnmatch('config.json', '*.json')).toBe(true);
  expect(fnmatch('sub/config.json', '*.json')).toBe(true);
  expect(fnmatch('config.JSON', '*.json')).toBe(false);
  expect(fnmatch('model-00001-of-00002.safetensors', 'model-?????-of-*.safetensors')).toBe(true);
  expect(fnmatch('model.safetensors', 'model-*.safetensors')).toBe(false);
  expect(fnmatch('a1', 'a[0-9]')).toBe(true);
  expect(fnmatch('ab', 'a[!0-9]')).toBe(true);
  expect(fnmatch('a1', 'a[!0-9]')).toBe(false);
  expect(fnmatch('vision/config.json', 'vision/')).toBe(true);
  expect(fnmatch('a+b(c).json', 'a+b(c).json')).toBe(true);
});
