"""The PyTorch worker: the twin of benchmarks/tfjs_bench.ts, speaking the line protocol of benchmarks/protocol.ts.

Reads one JSON request per line on stdin, answers `@@bench <json>` on stdout. Holds one
VideoLlavaForConditionalGeneration (transformers, float32, CPU); each `run` request names the thread count
(torch.set_num_threads) and the attention implementation (eager or sdpa, switched with
set_attn_implementation), so one loaded model serves every PyTorch column.

Inputs are rebuilt from names exactly as benchmarks/inputs.ts does:
    bench_input(name, shape) = synthetic_weight(name, shape) * 2**floor(log2(fan_in) / 2)
with reference/synthetic.py, so both sides see bit-identical tensors.

Run by benchmarks/run.ts with /work/.venv-ref/bin/python (or $VIDEO_LLAVA_REF_PYTHON).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import math
import mmap
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "reference"))
from synthetic import synthetic_weight  # noqa: E402

import transformers  # noqa: E402
from transformers import DynamicCache, VideoLlavaForConditionalGeneration  # noqa: E402

PREFIX = "@@bench "
MB = 1024 * 1024


def log(msg: str) -> None:
    print(f"[torch] {msg}", file=sys.stderr, flush=True)


def bench_input(name: str, shape: list[int]) -> torch.Tensor:
    fan_in = 1
    for d in shape[1:]:
        fan_in *= d
    k = math.floor(math.log2(fan_in) / 2)
    x = synthetic_weight(name, shape) * np.float32(2.0**k)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


NAMES = {
    "pixels": "bench.pixel_values_videos",
    "projector": "bench.projector_input",
}


def cache_name(layer: int, which: str) -> str:
    return f"bench.cache.{layer}.{which}"


# ---------------------------------------------------------------------------------------------------------------
# Process memory


def proc_memory() -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB."""
    try:
        text = Path("/proc/self/status").read_text()
        fields = {}
        for line in text.splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                fields[key] = int(value.split()[0]) / 1024
        return fields["VmRSS"], fields["VmHWM"]
    except (OSError, KeyError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return peak, peak


LIFETIME_PEAK = 0.0


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


LIBC = _libc()


def release_free_memory() -> None:
    """Hands freed heap memory back to the OS (glibc malloc_trim), so that the next call's RSS growth shows
    the memory it allocates rather than reusing pages that stayed resident from earlier calls."""
    gc.collect()
    if LIBC is not None and hasattr(LIBC, "malloc_trim"):
        LIBC.malloc_trim(0)


def reset_peak() -> None:
    global LIFETIME_PEAK
    LIFETIME_PEAK = max(LIFETIME_PEAK, proc_memory()[1])
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


# ---------------------------------------------------------------------------------------------------------------
# Stages


class Worker:
    def __init__(self) -> None:
        self.model: VideoLlavaForConditionalGeneration | None = None
        self.stages: dict[str, dict] = {}
        self.attn = "eager"

    # -- loading ----------------------------------------------------------------------------------------------
    def load(self, directory: str) -> dict:
        """from_pretrained, then one read per 4 KiB page of every parameter: transformers memory-maps the
        safetensors file, so from_pretrained alone returns before most weight bytes have been read."""
        if self.model is not None:
            raise RuntimeError("a model is already loaded")
        rss_before = proc_memory()[0]
        reset_peak()
        t0 = time.perf_counter()
        model = VideoLlavaForConditionalGeneration.from_pretrained(
            directory, dtype=torch.float32, attn_implementation="eager"
        )
        model.eval()
        t1 = time.perf_counter()
        with torch.no_grad():
            for p in model.parameters():
                p.detach().reshape(-1)[::1024].sum()
        t2 = time.perf_counter()
        rss_after, hwm = proc_memory()
        self.model = model
        self.attn = "eager"
        nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
        return {
            "ms": (t2 - t0) * 1e3,
            "fromPretrainedMs": (t1 - t0) * 1e3,
            "touchMs": (t2 - t1) * 1e3,
            "bytes": nbytes,
            "rssBeforeMB": rss_before,
            "rssPeakMB": hwm,
            "rssAfterMB": rss_after,
        }

    def need_model(self) -> VideoLlavaForConditionalGeneration:
        if self.model is None:
            raise RuntimeError('no model loaded: send "load" first')
        return self.model

    def set_attn(self, attn: str | None) -> None:
        if attn and attn != self.attn:
            self.need_model().set_attn_implementation(attn)
            self.attn = attn

    # -- stages -------------------------------------------------------------------------------------------------
    def prepare(self, key: str, stage: dict) -> dict:
        m = self.need_model()
        cfg = m.config
        v = cfg.vision_config
        t = cfg.text_config
        kind = stage["kind"]
        if kind == "vision":
            pixels = bench_input(NAMES["pixels"], [stage["frames"], v.num_channels, v.image_size, v.image_size])
            tower = m.model.video_tower
            self.stages[key] = {"run": lambda: tower(pixel_values=pixels).last_hidden_state}
        elif kind == "projector":
            positions = (v.image_size // v.patch_size) ** 2 + 1
            layers = cfg.vision_feature_layer
            n_layers = len(layers) if isinstance(layers, (list, tuple)) else 1
            x = bench_input(NAMES["projector"], [stage["frames"], positions, v.hidden_size * n_layers])
            self.stages[key] = {"run": lambda: m.model.multi_modal_projector(x)}
        elif kind == "prefill":
            ids = torch.tensor([stage["ids"]], dtype=torch.long)
            state: dict = {}

            def before() -> None:
                state["cache"] = DynamicCache(config=m.config)

            self.stages[key] = {
                "before": before,
                "run": lambda: m(input_ids=ids, cache=state["cache"], use_cache=True, logits_to_keep=1).logits,
                "after": lambda: state.clear(),
            }
        elif kind == "decode":
            past = stage["past"]
            shape = [1, t.num_key_value_heads, past, t.head_dim]
            keys = [bench_input(cache_name(i, "key"), shape) for i in range(t.num_hidden_layers)]
            values = [bench_input(cache_name(i, "value"), shape) for i in range(t.num_hidden_layers)]
            ids = torch.tensor([stage["ids"]], dtype=torch.long)
            state = {}

            def before() -> None:
                cache = DynamicCache(config=m.config)
                for i, (k, vv) in enumerate(zip(keys, values)):
                    cache.update(k, vv, i)
                state["cache"] = cache

            self.stages[key] = {
                "before": before,
                "run": lambda: m(input_ids=ids, cache=state["cache"], use_cache=True, logits_to_keep=1).logits,
                "after": lambda: state.clear(),
            }
        else:
            raise ValueError(f"unknown stage kind {kind}")
        return {}

    def stage(self, key: str) -> dict:
        s = self.stages.get(key)
        if s is None:
            raise RuntimeError(f"stage {key} was not prepared")
        return s

    @torch.inference_mode()
    def run(self, key: str, threads: int | None, attn: str | None, min_ms: float) -> dict:
        s = self.stage(key)
        if threads:
            torch.set_num_threads(int(threads))
        self.set_attn(attn)
        total = 0.0
        iters = 0
        probe = None
        while iters == 0 or (total < min_ms and iters < 1000):
            if "before" in s:
                s["before"]()
            t0 = time.perf_counter()
            y = s["run"]()
            total += (time.perf_counter() - t0) * 1e3
            iters += 1
            if total >= min_ms or iters >= 1000:
                probe = make_probe(y)
            del y
            if "after" in s:
                s["after"]()
        return {"ms": total / iters, "iters": iters, "probe": probe}

    @torch.inference_mode()
    def memory(self, key: str, threads: int | None, attn: str | None) -> dict:
        s = self.stage(key)
        if threads:
            torch.set_num_threads(int(threads))
        self.set_attn(attn)
        if "before" in s:
            s["before"]()
        release_free_memory()
        reset_peak()
        rss0 = proc_memory()[0]
        t0 = time.perf_counter()
        y = s["run"]()
        ms = (time.perf_counter() - t0) * 1e3
        del y
        if "after" in s:
            s["after"]()
        return {"ms": ms, "stagePeakRssDeltaMB": proc_memory()[1] - rss0}

    # -- GEMM roofline ------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def gemm(self, req: dict) -> dict:
        b, m, k, n = req["batch"], req["m"], req["k"], req["n"]
        trans_b = req["transB"] and req["layout"] == "model"
        if req.get("threads"):
            torch.set_num_threads(int(req["threads"]))
        g = torch.Generator().manual_seed(1)
        lead = [b] if b > 1 else []
        a = torch.rand(lead + [m, k], generator=g) * 2 - 1
        w = torch.rand(lead + ([n, k] if trans_b else [k, n]), generator=g) * 2 - 1
        if trans_b and b == 1:
            f = lambda: torch.nn.functional.linear(a, w)  # noqa: E731  the model's Linear
        elif trans_b:
            f = lambda: torch.matmul(a, w.transpose(-1, -2))  # noqa: E731  q·kᵀ as eager attention does
        else:
            f = lambda: torch.matmul(a, w)  # noqa: E731

        def once() -> float:
            t0 = time.perf_counter()
            f()
            return (time.perf_counter() - t0) * 1e3

        warm = once()
        count = 1 if warm > 2000 else req["repeats"]
        times = [once() for _ in range(count)]
        flops = 2 * b * m * k * n
        return {"ms": times, "gflops": flops / min(times) / 1e6}

    # -- experiments ------------------------------------------------------------------------------------------------
    def experiment(self, name: str, args: dict) -> dict:
        if name == "odirect-read":
            return odirect_read(args["file"], int(args.get("bytes", 1 << 30)))
        raise ValueError(f"unknown experiment {name}")

    def stats(self) -> dict:
        rss, hwm = proc_memory()
        return {"rssMB": rss, "peakRssMB": hwm, "maxRssMB": max(LIFETIME_PEAK, hwm)}


def make_probe(y: torch.Tensor) -> dict:
    flat = y.detach().reshape(-1)
    return {
        "absSum": float(flat.double().abs().sum()),
        "head": [float(v) for v in flat[:8]],
        "shape": list(y.shape),
    }


def odirect_read(file: str, nbytes: int) -> dict:
    """Sequential read bypassing the page cache (O_DIRECT): the disk's own speed, for streaming weights."""
    if not hasattr(os, "O_DIRECT"):
        return {"error": "O_DIRECT is not available on this platform"}
    size = os.path.getsize(file)
    chunk = 64 * MB
    nbytes = min(nbytes, size - size % chunk)
    buf = mmap.mmap(-1, chunk)  # page-aligned, as O_DIRECT needs
    fd = os.open(file, os.O_RDONLY | os.O_DIRECT)
    try:
        t0 = time.perf_counter()
        done = 0
        while done < nbytes:
            got = os.preadv(fd, [buf], done)
            if got <= 0:
                break
            done += got
        s = time.perf_counter() - t0
    except OSError as e:
        return {"error": f"O_DIRECT read failed: {e}"}
    finally:
        os.close(fd)
        buf.close()
    return {"bytes": done, "seconds": s, "mbPerS": done / MB / s}


def main() -> None:
    worker = Worker()
    hello = {
        "impl": "torch",
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": sys.version.split()[0],
            "blas": "mkl" if torch.backends.mkl.is_available() else "other",
        },
        "threads": torch.get_num_threads(),
    }
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        req = json.loads(line)
        cmd = req.get("cmd")
        try:
            if cmd == "hello":
                result = hello
            elif cmd == "load":
                result = worker.load(req["dir"])
            elif cmd == "prepare":
                result = worker.prepare(req["key"], req["stage"])
            elif cmd == "run":
                result = worker.run(req["key"], req.get("threads"), req.get("attn"), float(req["minMs"]))
            elif cmd == "memory":
                result = worker.memory(req["key"], req.get("threads"), req.get("attn"))
            elif cmd == "release":
                worker.stages.pop(req["key"], None)
                result = {}
            elif cmd == "gemm":
                result = worker.gemm(req)
            elif cmd == "experiment":
                result = worker.experiment(req["name"], req.get("args", {}))
            elif cmd == "stats":
                result = worker.stats()
            elif cmd == "exit":
                result = {}
            else:
                raise ValueError(f"unknown command {cmd}")
            reply = {"id": req.get("id"), "ok": True, "result": result}
        except Exception as e:  # noqa: BLE001  every failure goes back to the orchestrator as a reply
            reply = {"id": req.get("id"), "ok": False, "error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(PREFIX + json.dumps(reply) + "\n")
        sys.stdout.flush()
        if cmd == "exit":
            break


if __name__ == "__main__":
    main()
