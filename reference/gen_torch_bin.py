"""PyTorch checkpoint (.bin) fixtures for src/weights/torch_checkpoint.ts (test/fixtures/torch_bin/).

The original Video-LLaVA and LanguageBind repositories publish `pytorch_model.bin` files (torch.save zips), not
safetensors. This writes, with torch.save:
  state_dict.bin        a state dict with the cases a reader meets: float32, float16, bfloat16, float64, int64, bool,
                        a non-contiguous view (a transpose), two views of one storage at different offsets, a
                        0-d tensor, an empty tensor, an nn.Parameter, and an OrderedDict carrying _metadata
  expected.safetensors  every tensor of it as torch.load reads it, contiguous (floats widened to float32, integers
                        and bools as int64)
  not_a_state_dict.bin  torch.save of {"step": 3, "weights": tensor}: a value that is not a tensor
  legacy.bin            the start of torch.save(..., _use_new_zipfile_serialization=False), the pre-1.6 format (refused)
  evil.bin              a zip whose pickle names os.system (refused, never run)

Run: reference/.venv/bin/python reference/gen_torch_bin.py      (part of `npm run reference`)
"""

from __future__ import annotations

import collections
import io
import sys
import zipfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import FIXTURES, generator, save_case  # noqa: E402

OUT = FIXTURES / "torch_bin"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    g = generator(16)
    base = torch.randn((4, 6), generator=g)
    shared = torch.randn(20, generator=g)
    state = collections.OrderedDict()
    state["f32"] = torch.randn((3, 5), generator=g)
    state["f16"] = torch.randn((2, 3, 4), generator=g).half()
    state["bf16"] = torch.randn((7,), generator=g).bfloat16()
    state["f64"] = torch.randn((2, 2), generator=g).double()
    state["i64"] = torch.tensor([[1, -2, 3], [2**30, -(2**31), 0]], dtype=torch.int64)
    state["bool"] = torch.tensor([True, False, True])
    state["transposed"] = base.t()  # strides (1, 6)
    state["shared.a"] = shared[2:8].view(2, 3)  # storage offset 2
    state["shared.b"] = shared[10:]  # same storage, offset 10
    state["scalar"] = torch.tensor(1.5)
    state["empty"] = torch.zeros((0, 4))
    state["param"] = torch.nn.Parameter(torch.randn((2, 2), generator=g))
    state._metadata = collections.OrderedDict({"": {"version": 1}})
    torch.save(state, OUT / "state_dict.bin")

    loaded = torch.load(OUT / "state_dict.bin", map_location="cpu", weights_only=True)
    expected = {}
    for k, v in loaded.items():
        v = v.detach().contiguous()
        expected[k] = v.long() if v.dtype in (torch.int64, torch.bool) else v.float()
    save_case(OUT / "expected.safetensors", expected, {"dtypes": ",".join(f"{k}:{str(v.dtype).replace('torch.', '')}" for k, v in loaded.items())})

    torch.save({"step": 3, "weights": torch.ones(2)}, OUT / "not_a_state_dict.bin")
    # The first record of the pre-1.6 format (the pickled magic number); the rest of such a file holds object ids
    # that change from run to run, and the reader stops at the first bytes anyway.
    legacy = io.BytesIO()
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    (OUT / "legacy.bin").write_bytes(legacy.getvalue()[:15])

    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w", compression=zipfile.ZIP_STORED) as z:
        info = zipfile.ZipInfo("archive/data.pkl", date_time=(1980, 1, 1, 0, 0, 0))
        z.writestr(info, b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00echoq\x01\x85q\x02Rq\x03.")
    (OUT / "evil.bin").write_bytes(evil.getvalue())
    for f in OUT.iterdir():
        f.chmod(0o644)


if __name__ == "__main__":
    main()
