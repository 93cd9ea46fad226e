"""GPU benchmark: chunks/s of the policy node's hf backend on a random-weight MolmoAct2 of the released size.

    python bench/bench_gpu.py                 # CUDA only: bf16, CUDA graphs off/on, continuous and Think
    python bench/bench_gpu.py --dry-run-cpu   # any machine: build the real-size config on the meta device,
                                              # report its parameter count (no weights allocated)

Nothing is downloaded. The tokenizer, norm stats and action tokenizer come from the project's offline
tiny-checkpoint builder; the model is MolmoAct2ForConditionalGeneration from lerobot 0.6.1 with the
sizes below, random bf16 weights, saved in the HF layout and loaded through ``HfBackend`` exactly as
the policy node loads a checkpoint (``backend:=hf dtype:=bfloat16 device:=cuda cuda_graph:=...``).
One MolmoAct2-Think checkpoint (depth reasoning and the per-layer depth gate) is loaded once; the
continuous rows run it without depth reasoning (``think:=false``), the Think rows with adaptive depth.
Each row times ``HfBackend.predict`` on a YAM request (3 x 640x360 cameras, 14-d state), after warm-up,
and prints chunks/s beside the paper's figures (MolmoAct2 23.02 Hz original, 27.39 Hz + caching,
55.79 Hz + CUDA graphs; MolmoAct2-Think 12.71 Hz + CUDA graphs). Random weights: timings only.

Sizes ("released size"; no released config.json is at hand offline, so this is the best reading of
public facts):
* ViT: lerobot's MolmoAct2VitConfig defaults (SigLIP2 so400m/14: hidden 1152, 27 layers, 16 heads,
  head 72, MLP 4304) at 378 px (27 x 27 = 729 positions); adapter: lerobot's defaults (ViT layers
  -3, -9, heads 16 x 72) projected to the LLM width.
* LLM: Molmo2-4B's Qwen3-4B (36 layers, hidden 2560, 32 heads / 8 KV heads of 128, MLP 9728,
  vocabulary 151936 + 128, QK norm); the paper's expert has "the same depth as the VLM: 36 layers".
* Action expert: hidden 1024, 16 heads (project reference notes), 36 blocks, lerobot's other defaults.
* Images: one 378 px crop per camera (the processor's ``max_crops=1``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PAPER = {("continuous", False): "23.02 (original) / 27.39 (+ caching)", ("continuous", True): "55.79",
         ("think", False): "-", ("think", True): "12.71"}

VIT = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
           num_key_value_heads=16, head_dim=72, image_default_input_size=[378, 378], image_patch_size=14,
           image_num_pos=729)
LLM = dict(hidden_size=2560, num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=151936,
           additional_vocab_size=128, num_hidden_layers=36, intermediate_size=9728, use_qk_norm=True,
           qkv_bias=False, max_position_embeddings=8192, rope_theta=1000000.0)
ADAPTER = dict(vit_layers=[-3, -9], hidden_size=1152, num_attention_heads=16, num_key_value_heads=16, head_dim=72,
               intermediate_size=9728, text_hidden_size=2560)
EXPERT = dict(hidden_size=1024, num_layers=36, num_heads=16, ffn_multiple_of=256, timestep_embed_dim=256)
IMAGE_PX = 378
# --smoke-cpu: the same pipeline (checkpoint written, loaded by HfBackend, timed) at the tiny size on the CPU,
# so a machine without a GPU (and the test) exercises every step but the device
SMOKE = dict(vit=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, head_dim=16, image_default_input_size=[56, 56], image_num_pos=16),
             text=dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=None,
                       num_hidden_layers=2, intermediate_size=128),
             adapter=dict(vit_layers=[-1, -2], hidden_size=32, num_attention_heads=2, num_key_value_heads=2,
                          head_dim=16, intermediate_size=64, text_hidden_size=64),
             expert=dict(hidden_size=32, num_layers=2, num_heads=2, ffn_multiple_of=32, timestep_embed_dim=32),
             px=56)


def real_size_config(tiny_dir: Path, attn: str, smoke: bool = False):
    """The tiny checkpoint's config (token ids, heads, flags) with every size replaced by the real one."""
    from lerobot.policies.molmoact2.molmoact2_hf_model.configuration_molmoact2 import MolmoAct2Config

    d = json.loads((tiny_dir / "config.json").read_text())
    vocab = d["text_config"]["vocab_size"]
    for key, sizes, small in (("vit_config", VIT, "vit"), ("text_config", LLM, "text"),
                              ("adapter_config", ADAPTER, "adapter"), ("action_expert_config", EXPERT, "expert")):
        d[key].update(sizes)
        if smoke:
            d[key].update(SMOKE[small])
            if key == "text_config":
                d[key]["vocab_size"] = vocab
        if "attn_implementation" in d[key]:
            d[key]["attn_implementation"] = attn
    d.pop("_name_or_path", None)
    return MolmoAct2Config.from_dict(d)


def build_tiny(root: Path) -> Path:
    from molmoact2_policy.core.tiny_checkpoint import build_tiny_checkpoint

    return build_tiny_checkpoint(root / "tiny-think", think=True)


def count_on_meta(cfg) -> dict[str, int]:
    import torch
    from lerobot.policies.molmoact2.molmoact2_hf_model.modeling_molmoact2 import MolmoAct2ForConditionalGeneration

    with torch.device("meta"):
        model = MolmoAct2ForConditionalGeneration(cfg)
    parts: dict[str, int] = {}
    for name, p in model.named_parameters():
        low = name.lower()
        part = ("action expert" if "action_expert" in low else "vision" if "vit" in low or "image" in low
                else "LLM + heads")
        parts[part] = parts.get(part, 0) + p.numel()
    parts["total"] = sum(p.numel() for p in model.parameters())
    return parts


def write_real_checkpoint(tiny: Path, out: Path, cfg, device: str = "cuda", px: int = IMAGE_PX) -> Path:
    """Random bf16 weights of the real size, built on the GPU, saved in the HF layout beside the
    tiny checkpoint's tokenizer, norm stats, action tokenizer and a 378 px processor config."""
    import torch
    from lerobot.policies.molmoact2.molmoact2_hf_model.modeling_molmoact2 import MolmoAct2ForConditionalGeneration

    from molmoact2_policy.core import tiny_checkpoint as tc
    from tokenizers import Tokenizer

    shutil.copytree(tiny, out, ignore=shutil.ignore_patterns("model.safetensors", "config.json"))
    tok = Tokenizer.from_file(str(tiny / "tokenizer.json"))
    names = tc.TEXT_SPECIALS + tc.IMAGE_SPECIALS + [f"<depth_{i}>" for i in range(tc.NUM_DEPTH_TOKENS)] + [
        "<action_0>"]
    ids = {t: tok.token_to_id(t) for t in names}
    chain = json.loads((tiny / "tiny_checkpoint.json").read_text())["discrete_chain"]
    torch.manual_seed(0)
    with torch.device(device):
        model = MolmoAct2ForConditionalGeneration(cfg).to(torch.bfloat16).eval()
    # the same grammar-following weights as the tiny checkpoint, so Think's depth codes end
    tc._craft_termination(model, ids, chain, ids["<action_0>"])
    model.save_pretrained(str(out), safe_serialization=True, max_shard_size="20GB")
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    pc = json.loads((out / "processor_config.json").read_text())
    pc["image_processor"]["size"] = {"height": px, "width": px}
    pc["image_processor"]["max_crops"] = 1
    (out / "processor_config.json").write_text(json.dumps(pc, indent=1))
    return out


def load_backend(ckpt: Path, device: str):
    from molmoact2_policy.core.backends import make_backend

    # loaded once (the slow part at this size); think and cuda_graph are read per call
    return make_backend("hf", checkpoint=str(ckpt), device=device, dtype="bfloat16", think=True, cuda_graph=False)


def time_rows(be, think: bool, cuda_graph: bool, n: int, warmup: int) -> tuple[float, float, str]:
    import torch

    from molmoact2_policy.core.backends.base import PolicyRequest

    cuda = be.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    be.think = think
    be.cuda_graph = cuda_graph and cuda
    be.reset()
    rng = np.random.default_rng(0)
    base = [rng.integers(0, 256, (360, 640, 3), dtype=np.uint8) for _ in range(3)]
    note = ""
    times = []
    try:
        for i in range(warmup + n):
            imgs = [b.copy() for b in base]
            if think:  # a moving object in the top camera: some depth cells re-predicted, the rest replayed
                x = 40 * (i % 12)
                imgs[0][100:190, x:x + 90] = 255 - imgs[0][100:190, x:x + 90]
            req = PolicyRequest(images=imgs, state=np.zeros(14, np.float32), instruction="fold the towel in half",
                                norm_tag="yam_dual_molmoact2", camera_names=["top", "left", "right"], seed=i)
            sync()
            t0 = time.perf_counter()
            result = be.predict(req)
            sync()
            if result.actions.shape != (30, 14) or not np.isfinite(result.actions).all():
                raise RuntimeError(f"bad chunk {result.actions.shape}")
            if think and result.depth_codes is None:
                raise RuntimeError("Think returned no depth codes")
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    except Exception as exc:  # a row that fails is reported, the others still run
        note = f"failed: {type(exc).__name__}: {str(exc)[:120]}"
    if not times:
        return float("nan"), float("nan"), note
    med = float(np.median(times))
    return 1.0 / med, med * 1e3, note


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run-cpu", action="store_true",
                    help="build the real-size config on the meta device and print its parameter count")
    ap.add_argument("--smoke-cpu", action="store_true",
                    help="run the whole pipeline on the CPU at the tiny size (checks the script, not the speed)")
    ap.add_argument("--n", type=int, default=20, help="timed chunks per row")
    ap.add_argument("--warmup", type=int, default=3, help="untimed chunks per row (CUDA graph capture)")
    ap.add_argument("--attn", default="sdpa", help="attention implementation (sdpa, eager)")
    ap.add_argument("--workdir", default=None, help="where to write the random checkpoint (default: a temp dir)")
    a = ap.parse_args(argv)

    import torch

    if not a.dry_run_cpu and not a.smoke_cpu and not torch.cuda.is_available():
        print("bench_gpu: CUDA is not available on this machine; this benchmark needs an NVIDIA GPU "
              "(use --dry-run-cpu to check the real-size configuration here)", file=sys.stderr)
        return 2
    root = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="bench_gpu."))
    root.mkdir(parents=True, exist_ok=True)
    try:
        tiny = build_tiny(root)
        cfg = real_size_config(tiny, a.attn)
        parts = count_on_meta(cfg)
        print("MolmoAct2(-Think) at the released size, parameters: "
              + ", ".join(f"{k} {v / 1e9:.2f} B" for k, v in parts.items()))
        if a.dry_run_cpu:
            print("dry run: configuration built on the meta device, no weights allocated")
            return 0
        device, px = ("cpu", SMOKE["px"]) if a.smoke_cpu else ("cuda", IMAGE_PX)
        if a.smoke_cpu:
            cfg = real_size_config(tiny, a.attn, smoke=True)
        t0 = time.perf_counter()
        ckpt = write_real_checkpoint(tiny, root / "real-size", cfg, device=device, px=px)
        print(f"random bf16 checkpoint written in {time.perf_counter() - t0:.0f} s: {ckpt}")
        where = "CPU smoke run (tiny size; not a speed figure)" if a.smoke_cpu else f"GPU: {torch.cuda.get_device_name(0)}"
        print(f"{where}; YAM request, 3 x 640x360 -> {px} px, "
              f"{a.n} timed chunks per row after {a.warmup} warm-up")
        print(f"| mode | CUDA graphs | chunks/s (median) | ms/chunk | paper, Hz | note |")
        print("|---|---|---|---|---|---|")
        t0 = time.perf_counter()
        be = load_backend(ckpt, device)
        print(f"loaded by HfBackend in {time.perf_counter() - t0:.0f} s")
        for mode in ("continuous", "think"):
            for graph in (False, True):
                hz, ms, note = time_rows(be, mode == "think", graph, a.n, a.warmup)
                print(f"| {mode} | {'on' if graph else 'off'} | {hz:.2f} | {ms:.1f} | {PAPER[(mode, graph)]} | {note} |",
                      flush=True)
        return 0
    finally:
        if not a.workdir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
