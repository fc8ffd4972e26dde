"""Cache interoperability between this project's Hub loader (src/hub) and Python's huggingface_hub, both
ways, against the local Hub of test/hub/server.ts (compiled with the project's tsc, run with node).

  1. TS -> Python: resolveModel fills a temp cache from the server. Then, with HF_HUB_OFFLINE=1,
     huggingface_hub resolves every file from it (hf_hub_download, snapshot_download(local_files_only),
     scan_cache_dir) and transformers loads the config, tokenizer and model from it.
  2. Python -> TS: huggingface_hub fills test/fixtures/hub/python_cache from the server, as transformers
     users do: snapshot_download(allow_patterns=<the files a model needs>) for `main`, and hf_hub_download
     file by file for the tag `v1` (which leaves .no_exist markers for the files v1 lacks). resolveModel
     then resolves both revisions from a copy of it with zero requests (test/hub/python_cache.test.ts
     checks the committed copy the same way, in CI).

Deterministic: blob names are content hashes and the server's commit hashes derive from the content, so
a rerun writes the same files and links (checked below by filling a second cache and comparing).

Run: /work/.venv-ref/bin/python reference/hub_interop.py
(needs node and the npm dependencies; not one of `npm run reference`'s gen_*.py, since it needs a server.)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURE = REPO_ROOT / "test" / "fixtures" / "hub" / "python_cache"
MAX_FIXTURE_BYTES = 300_000

TESTER = "tiny-org/video-llava-tester"
SHARDED = "tiny-org/sharded-tester"
# The files src/hub/resolve.ts fetches for a model (MODEL_FILES and the weights).
MODEL_FILES = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "processor_config.json",
    "chat_template.json",
    "chat_template.jinja",
]
WEIGHT_PATTERNS = ["model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors"]
TESTER_MAIN = sorted(
    ["config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]
)
TESTER_V1 = ["config.json", "generation_config.json", "model.safetensors"]

# Runs resolveModel (compiled JS at $HUB_JS) for "repo@revision" jobs; prints the directories and the
# number of HTTP requests it made (every request goes through the counting fetch).
NODE_DRIVER = r"""
const { resolveModel } = require(process.env.HUB_JS);
const [cacheDir, endpoint, ...jobs] = process.argv.slice(1);
let requests = 0;
const counting = (...args) => { requests++; return fetch(...args); };
(async () => {
  const dirs = {};
  for (const job of jobs) {
    const [repo, revision] = job.split('@');
    dirs[job] = await resolveModel(repo, { cacheDir, endpoint, revision, fetch: counting });
  }
  process.stdout.write(JSON.stringify({ dirs, requests }));
})().catch((e) => { process.stderr.write(String(e && e.stack)); process.exit(1); });
"""


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without any Hugging Face setting (token, endpoint, cache, offline)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.update(HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_UPDATE_CHECK="1")
    env.update(extra)
    return env


def build(out: Path) -> Path:
    """Compiles src/hub and test/hub/server.ts to `out` with the project's TypeScript compiler."""
    tsc = REPO_ROOT / "node_modules" / ".bin" / "tsc"
    subprocess.run(
        [str(tsc), "--outDir", str(out), "--rootDir", str(REPO_ROOT), "--module", "commonjs", "--target", "ES2022",
         "--moduleResolution", "node", "--esModuleInterop", "--skipLibCheck", "--strict", "--types", "node",
         str(REPO_ROOT / "test" / "hub" / "server.ts"), str(REPO_ROOT / "src" / "hub" / "index.ts")],
        check=True,
    )
    (out / "test" / "fixtures").symlink_to(REPO_ROOT / "test" / "fixtures")  # server.ts reads its repos there
    return out


def node_env(out: Path) -> dict[str, str]:
    return clean_env(NODE_PATH=str(REPO_ROOT / "node_modules"), HUB_JS=str(out / "src" / "hub" / "index.js"))


def resolve_ts(out: Path, cache: Path, endpoint: str, jobs: list[str]) -> dict:
    run = subprocess.run(["node", "-e", NODE_DRIVER, str(cache), endpoint, *jobs], env=node_env(out),
                         capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"resolveModel failed:\n{run.stderr}")
    return json.loads(run.stdout)


def in_subprocess(mode: str, *args: str, **env: str) -> str:
    """Runs this script's `mode` in a fresh interpreter, so huggingface_hub reads HF_* at import."""
    run = subprocess.run([sys.executable, __file__, mode, *args], env=clean_env(**env), capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{run.stdout}\n{run.stderr}")
    return run.stdout


# --- run inside subprocesses ------------------------------------------------------------------------

def python_fill(cache: str) -> None:
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import RemoteEntryNotFoundError

    snapshot_download(TESTER, cache_dir=cache, allow_patterns=MODEL_FILES + WEIGHT_PATTERNS)
    for name in MODEL_FILES + ["model.safetensors"]:
        try:
            hf_hub_download(TESTER, name, revision="v1", cache_dir=cache)
        except RemoteEntryNotFoundError:
            pass  # as transformers does for optional files; huggingface_hub records it under .no_exist


def python_check(cache: str, dirs_json: str) -> None:
    """Offline (HF_HUB_OFFLINE=1): huggingface_hub and transformers read the cache resolveModel filled."""
    from huggingface_hub import hf_hub_download, scan_cache_dir, snapshot_download
    from huggingface_hub.errors import IncompleteSnapshotError

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    dirs = json.loads(dirs_json)
    for job, names in ((f"{TESTER}@main", TESTER_MAIN), (f"{TESTER}@v1", TESTER_V1)):
        repo, revision = job.split("@")
        for name in names:
            path = hf_hub_download(repo, name, revision=revision, cache_dir=cache)
            assert path == os.path.join(dirs[job], name), (path, dirs[job])
        print(f"hf_hub_download offline: {job}: {len(names)} files resolved to {dirs[job]}")
    snap = snapshot_download(TESTER, cache_dir=cache, allow_patterns=MODEL_FILES + WEIGHT_PATTERNS)
    assert snap == dirs[f"{TESTER}@main"], snap
    print("snapshot_download(allow_patterns=model files) offline: same snapshot folder")
    try:
        snapshot_download(TESTER, cache_dir=cache)
        raise AssertionError("a full snapshot_download should see that README.md and .gitattributes were not fetched")
    except IncompleteSnapshotError as e:
        print(f"snapshot_download() of the whole repo offline: IncompleteSnapshotError as expected ({str(e)[:120]}...)")
    assert snapshot_download(SHARDED, cache_dir=cache) == dirs[f"{SHARDED}@main"]
    print("snapshot_download(sharded repo) offline: complete")
    info = scan_cache_dir(cache)
    assert not info.warnings, info.warnings
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        revs = sorted((sorted(r.refs), r.commit_hash[:8], r.nb_files) for r in repo.revisions)
        print(f"scan_cache_dir: {repo.repo_id}: {repo.size_on_disk} bytes, revisions {revs}")

    import torch
    from transformers import AutoConfig, AutoTokenizer, VideoLlavaForConditionalGeneration

    config = AutoConfig.from_pretrained(TESTER, cache_dir=cache)
    model = VideoLlavaForConditionalGeneration.from_pretrained(TESTER, cache_dir=cache)
    tokenizer = AutoTokenizer.from_pretrained(TESTER, cache_dir=cache)
    n = sum(p.numel() for p in model.parameters())
    assert isinstance(next(model.parameters()), torch.Tensor)
    print(f"transformers offline: {type(config).__name__}, {type(model).__name__} ({n} parameters), "
          f"{type(tokenizer).__name__} (vocab {len(tokenizer)})")


# --- driver -------------------------------------------------------------------------------------------

def listing(root: Path) -> list[tuple[str, str]]:
    """(path, link target or sha256) of everything under root, without following links."""
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out.append((rel, "-> " + os.readlink(p)))
        elif p.is_file():
            out.append((rel, hashlib.sha256(p.read_bytes()).hexdigest()))
    return out


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="hub-interop-"))
    server = None
    try:
        out = build(tmp / "js")
        server = subprocess.Popen(["node", str(out / "test" / "hub" / "server.js")], env=node_env(out),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None
        info = json.loads(server.stdout.readline())
        endpoint = info["endpoint"]
        print(f"local hub {endpoint}, cdn {info['cdn']}, repos {json.dumps(info['repos'])}")

        # 1. TS fills, Python reads offline.
        ts_cache = tmp / "ts_cache"
        jobs = [f"{TESTER}@main", f"{TESTER}@v1", f"{SHARDED}@main"]
        filled = resolve_ts(out, ts_cache, endpoint, jobs)
        print(f"[TS -> Python] resolveModel filled {ts_cache} with {filled['requests']} requests")
        print(in_subprocess("--python-check", str(ts_cache), json.dumps(filled["dirs"]), HF_HUB_OFFLINE="1",
                            HF_HOME=str(tmp / "home")), end="")

        # 2. Python fills (the committed fixture), TS reads with zero requests.
        shutil.rmtree(FIXTURE, ignore_errors=True)
        FIXTURE.parent.mkdir(parents=True, exist_ok=True)
        in_subprocess("--python-fill", str(FIXTURE), HF_ENDPOINT=endpoint, HF_HOME=str(tmp / "home"))
        again = tmp / "python_cache_again"
        in_subprocess("--python-fill", str(again), HF_ENDPOINT=endpoint, HF_HOME=str(tmp / "home"))
        assert listing(FIXTURE) == listing(again), "huggingface_hub did not write the same cache twice"
        size = sum(p.lstat().st_size for p in FIXTURE.rglob("*") if p.is_file() and not p.is_symlink())
        assert size < MAX_FIXTURE_BYTES, size
        print(f"[Python -> TS] huggingface_hub filled {FIXTURE.relative_to(REPO_ROOT)} ({size} bytes, "
              f"{len(listing(FIXTURE))} entries, identical on a second fill):")
        for rel, what in listing(FIXTURE):
            print(f"    {rel}  {what[:19] if not what.startswith('->') else what}")
        copy = tmp / "python_cache_copy"
        shutil.copytree(FIXTURE, copy, symlinks=True)
        read = resolve_ts(out, copy, endpoint, [f"{TESTER}@main", f"{TESTER}@v1"])
        assert read["requests"] == 0, read
        for job, names in ((f"{TESTER}@main", TESTER_MAIN), (f"{TESTER}@v1", TESTER_V1)):
            assert sorted(os.listdir(read["dirs"][job])) == names, (job, os.listdir(read["dirs"][job]))
        print(f"[Python -> TS] resolveModel resolved main and v1 from it with {read['requests']} requests: "
              f"{json.dumps({k: os.path.relpath(v, copy) for k, v in read['dirs'].items()})}")
    finally:
        if server is not None:
            server.stdin.close()  # type: ignore[union-attr]
            server.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--python-fill":
        python_fill(sys.argv[2])
    elif len(sys.argv) > 1 and sys.argv[1] == "--python-check":
        python_check(sys.argv[2], sys.argv[3])
    else:
        main()
