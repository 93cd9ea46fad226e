"""An offline tiny MolmoAct2 checkpoint in the released Hugging Face layout.

``build_tiny_checkpoint(out)`` writes, in seconds and without any network access:

* ``config.json`` + ``model.safetensors``: a ~0.5 M-parameter MolmoAct2ForConditionalGeneration
  (the class lerobot 0.6.1 ships): 2-layer LLM (hidden 64), 2-layer ViT at 56 px, a 2-block action
  expert; with ``think=True`` the MolmoAct2-Think variant (depth reasoning, per-layer depth gate).
* ``tokenizer.json`` / ``tokenizer_config.json``: a byte-level BPE trained locally with the
  ``tokenizers`` package, loadable as ``Qwen2Tokenizer``, holding every MolmoAct2 special token
  (``<state_0..255>``, ``<depth_0..127>``, ``<action_k>``, image tokens, setup/control markers).
* ``processor_config.json``: image processor at 56 px, one crop.
* ``norm_stats.json``: q01/q99 stats for the released norm tags ``franka_droid``,
  ``yam_dual_molmoact2``, ``so100_so101_molmoact2`` (absolute joint positions, in each
  checkpoint's model units) and ``libero`` (end-effector deltas), with setup type, control mode,
  action horizon and n_action_steps.
* ``action_tokenizer/``: an OpenFAST ``UniversalActionProcessor`` fitted locally on synthetic
  normalised trajectories (discrete action mode).

Random weights never emit ``<depth_end>`` or action tokens, and the model code then raises. The
weights are crafted so that generation ends the way a trained model's does, with no hooks on the
model: a handful of "class" dimensions of the token embedding are reserved; the tokens whose
successor is fixed (``<depth_k>`` -> ``<depth_end>``, ``<action_output>`` / ``<depth_end>`` ->
``<action_start>`` -> a fixed chain of distinct action tokens -> ``<action_end>`` -> EOS) get a
large value in their class dimension, and the LM head maps that dimension onto the successor's
logit. The residual stream at the last position is dominated by that embedding, so greedy decoding
follows the chain whatever the images and state are; depth codes (argmax over the depth rows only)
and the continuous actions still depend on the inputs through the random weights.
The discrete chain decodes to a valid chunk for ``discrete_tag`` (default yam_dual_molmoact2);
other tags decode through the OpenFAST fallback (a logged warning and a mid-range chunk), exactly as
the real model code does for a malformed token span.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

BUILDER_VERSION = "1"

# Special tokens of MolmoAct2 (names as the model and processor code spell them).
TEXT_SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<action_output>", "<depth_output>", "<action_start>", "<action_end>",
    "<depth_start>", "<depth_end>", "<state_start>", "<state_end>",
    "<setup_start>", "<setup_end>", "<control_start>", "<control_end>",
]
IMAGE_SPECIALS = [
    "<im_patch>", "<im_col>", "<im_start>", "<low_res_im_start>", "<frame_start>",
    "<im_end>", "<frame_end>", "<im_low>", "<|image|>", "<|video|>",
]
NUM_STATE_TOKENS = 256
NUM_DEPTH_TOKENS = 128
NUM_DEPTH_CODES = 100
ADDITIONAL_VOCAB = 128
MAX_ACTION_DIM = 32
MAX_ACTION_HORIZON = 30
HIDDEN = 64  # the tiny LLM's width

# Model sizes the builder makes: the same architecture and HF layout, different dimensions.
# ``tiny`` (~0.42 M parameters, 56 px) keeps tests fast; ``small`` (112 px: 8x8 patches, the cube
# of the SO-101 task a few pixels wide instead of one or two) is the smallest we found that learns
# the simulated vision task on a CPU in minutes (the fine-tune of ``molmoact2-train-demo``).
SIZES: dict[str, dict] = {
    "tiny": dict(image=56, vit_hidden=32, vit_inter=64, vit_layers=2, vit_heads=2, text_hidden=HIDDEN, text_heads=4,
                 text_kv_heads=2, text_inter=128, text_layers=2, expert_hidden=32, expert_layers=2, expert_heads=2),
    "small": dict(image=112, vit_hidden=64, vit_inter=128, vit_layers=2, vit_heads=4, text_hidden=128, text_heads=4,
                  text_kv_heads=2, text_inter=256, text_layers=2, expert_hidden=64, expert_layers=2, expert_heads=4),
}

# Per norm tag: dims, horizon, setup / control text, and q01/q99 in the checkpoint's model units.
_DEG = 180.0 / np.pi
TAGS: dict[str, dict] = {
    "franka_droid": dict(
        state_dim=8, action_dim=8, horizon=15, setup_type="franka droid", cameras=["external", "wrist"],
        control_mode="absolute joint position",
        low=[-2.4, -1.5, -2.6, -2.8, -2.5, 0.8, -2.7, 0.0],
        high=[2.4, 1.5, 2.6, -0.3, 2.5, 4.2, 2.7, 1.0],
    ),
    "yam_dual_molmoact2": dict(
        state_dim=14, action_dim=14, horizon=30, setup_type="bimanual yam", cameras=["top", "left", "right"],
        control_mode="absolute joint position",
        low=[-2.3, 0.1, 0.1, -1.5, -1.4, -1.9, 0.0] * 2,
        high=[2.8, 3.4, 2.9, 1.4, 1.4, 1.9, 1.0] * 2,
    ),
    "so100_so101_molmoact2": dict(
        state_dim=6, action_dim=6, horizon=30, setup_type="so100 so101", cameras=["front", "wrist"],
        control_mode="absolute joint position",
        # degrees, LeRobot's old calibration (signs and offsets), gripper 0..100
        low=[-100.0, -10.0, -5.0, -90.0, -150.0, 0.0],
        high=[100.0, 190.0, 185.0, 90.0, 150.0, 100.0],
    ),
    "libero": dict(
        state_dim=8, action_dim=7, horizon=10, setup_type="libero franka", cameras=["agentview", "wrist"],
        control_mode="delta end effector pose",
        low=[-0.9, -0.9, -0.9, -0.3, -0.3, -0.3, -1.0],
        high=[0.9, 0.9, 0.9, 0.3, 0.3, 0.3, 1.0],
        state_low=[-0.5, -0.5, 0.0, -3.2, -3.2, -3.2, 0.0, -0.05],
        state_high=[0.5, 0.5, 1.4, 3.2, 3.2, 3.2, 0.05, 0.0],
    ),
}
DEFAULT_DISCRETE_TAG = "yam_dual_molmoact2"

REQUIRED_FILES = ("config.json", "model.safetensors", "processor_config.json", "tokenizer.json",
                  "tokenizer_config.json", "norm_stats.json")

_CORPUS = [
    "pick up the red block and place it in the bowl",
    "fold the towel in half", "put the candy in the box", "hang the tools on the wall",
    "open the drawer and put the cup inside", "pour tea into the cup", "stack the blocks",
    "push the button", "wipe the table with the sponge", "prepare the pipette",
    "make popcorn", "store the candy", "The task is to", "The setup is", "The current state of the robot is",
    "The expected control mode is", "Given these, what action should the robot take to complete the task?",
    "first predict the depth map of the main image and then predict the action the robot should take",
    "Image 1", "Image 2", "Image 3", "user", "assistant", "absolute joint position",
    "delta end effector pose", "franka droid", "bimanual yam", "so100 so101", "libero franka",
]


def builder_fingerprint() -> str:
    """Hash of this builder's source: a cache directory keyed on it is rebuilt when the builder changes."""
    src = Path(__file__).read_bytes()
    return hashlib.sha256(src + BUILDER_VERSION.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# tokenizers


def _build_text_tokenizer(out: Path, num_action_tokens: int) -> dict[str, int]:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from tokenizers import AddedToken

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, min_frequency=2, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[],
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    base = list(TEXT_SPECIALS)
    base += [f"<action_{i}>" for i in range(num_action_tokens)]
    base += [f"<state_{i}>" for i in range(NUM_STATE_TOKENS)]
    base += [f"<depth_{i}>" for i in range(NUM_DEPTH_TOKENS)]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in base])
    vocab_size = tok.get_vocab_size()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in IMAGE_SPECIALS])
    tok.save(str(out / "tokenizer.json"))
    # vocab.json / merges.txt as well (the slow-tokenizer layout the releases also ship)
    model_json = json.loads(tok.to_str())["model"]
    (out / "vocab.json").write_text(json.dumps(model_json["vocab"], ensure_ascii=False))
    merges = model_json["merges"]
    with open(out / "merges.txt", "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for m in merges:
            f.write((" ".join(m) if isinstance(m, list) else m) + "\n")
    added = {}
    for t in base + IMAGE_SPECIALS:
        tid = tok.token_to_id(t)
        added[str(tid)] = {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                           "single_word": False, "special": True}
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer",
        "added_tokens_decoder": added,
        "bos_token": None,
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "model_max_length": 32768,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "split_special_tokens": False,
    }, indent=1))
    (out / "special_tokens_map.json").write_text(json.dumps({
        "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}, indent=1))
    ids = {t: tok.token_to_id(t) for t in base + IMAGE_SPECIALS}
    ids["__vocab_size__"] = vocab_size
    ids["__total__"] = tok.get_vocab_size()
    return ids



def _synthetic_chunks(rng: np.random.Generator, n: int, horizon: int, dim: int) -> list[np.ndarray]:
    """Smooth normalised trajectories in [-1, 1] (what OpenFAST sees at training time)."""
    t = np.linspace(0.0, 1.0, horizon)[:, None]
    chunks = []
    for _ in range(n):
        start = rng.uniform(-0.8, 0.8, size=(1, dim))
        vel = rng.normal(0.0, 0.3, size=(1, dim))
        wave = rng.normal(0.0, 0.05, size=(1, dim)) * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t)
        chunks.append(np.clip(start + vel * t + wave, -1.0, 1.0))
    return chunks


def _fit_action_tokenizer(out: Path, seed: int):
    from lerobot.policies.molmoact2.molmoact2_hf_model.action_tokenizer import UniversalActionProcessor

    rng = np.random.default_rng(seed)
    data = []
    for spec in TAGS.values():
        data += _synthetic_chunks(rng, 150, spec["horizon"], spec["action_dim"])
    import logging
    logging.getLogger().setLevel(logging.ERROR)
    proc = UniversalActionProcessor.fit(data, scale=10, vocab_size=1024)
    adir = out / "action_tokenizer"
    adir.mkdir(parents=True, exist_ok=True)
    proc.tokenizer.save_pretrained(str(adir))
    (adir / "processor_config.json").write_text(json.dumps({
        "scale": proc.scale, "vocab_size": proc.vocab_size, "min_token": proc.min_token,
        "processor_class": "UniversalActionProcessor",
    }, indent=1))
    return proc


def _discrete_chain(proc, n_chars: int, max_len: int = 24) -> list[int]:
    """Distinct OpenFAST token ids whose decoded characters number exactly ``n_chars``.

    Prefers long tokens made of near-zero DCT coefficients, so that the decoded normalised chunk
    stays close to the middle of the norm-stats range.
    """
    tok = proc.bpe_tokenizer
    vocab = tok.get_vocab()
    zero_char = -proc.min_token
    items = []
    for _, tid in vocab.items():
        s = tok.decode([tid])
        if not s:
            continue
        coeffs = np.array([ord(c) for c in s]) - zero_char
        items.append((tid, len(s), float(np.abs(coeffs).max())))
    small = sorted([x for x in items if x[2] <= 2], key=lambda x: (-x[1], x[2]))
    chain, remaining = [], n_chars
    for tid, length, _ in small:
        if length <= remaining and len(chain) < max_len:
            chain.append(tid)
            remaining -= length
        if remaining == 0:
            break
    if remaining:
        singles = sorted([x for x in items if x[1] == 1 and x[0] not in chain], key=lambda x: x[2])
        for tid, _, _ in singles[:remaining]:
            chain.append(tid)
            remaining -= 1
    if remaining:
        raise RuntimeError(f"cannot compose a discrete chain of {n_chars} characters")
    assert len(set(chain)) == len(chain)
    return chain


# ----------------------------------------------------------------------------------------------
# model


def _make_config(ids: dict[str, int], num_action_tokens: int, think: bool, size: str = "tiny"):
    from lerobot.policies.molmoact2.molmoact2_hf_model.configuration_molmoact2 import (
        MolmoAct2ActionExpertConfig, MolmoAct2AdapterConfig, MolmoAct2Config, MolmoAct2TextConfig,
        MolmoAct2VitConfig)

    z = SIZES[size]
    patches = (z["image"] // 14) ** 2
    vit = MolmoAct2VitConfig(hidden_size=z["vit_hidden"], intermediate_size=z["vit_inter"], num_hidden_layers=z["vit_layers"],
                             num_attention_heads=z["vit_heads"], num_key_value_heads=z["vit_heads"], head_dim=16,
                             image_default_input_size=(z["image"], z["image"]), image_patch_size=14, image_num_pos=patches,
                             attn_implementation="sdpa")
    adapter = MolmoAct2AdapterConfig(vit_layers=(-1, -2), hidden_size=z["vit_hidden"], num_attention_heads=z["vit_heads"],
                                     num_key_value_heads=z["vit_heads"], head_dim=16, intermediate_size=z["vit_inter"],
                                     text_hidden_size=z["text_hidden"], attn_implementation="sdpa")
    text = MolmoAct2TextConfig(hidden_size=z["text_hidden"], num_attention_heads=z["text_heads"],
                               num_key_value_heads=z["text_kv_heads"], head_dim=z["text_hidden"] // z["text_heads"],
                               vocab_size=ids["__vocab_size__"], additional_vocab_size=ADDITIONAL_VOCAB,
                               num_hidden_layers=z["text_layers"], intermediate_size=z["text_inter"], max_position_embeddings=4096,
                               rope_theta=1000000.0, use_qk_norm=False, attn_implementation="sdpa")
    expert = MolmoAct2ActionExpertConfig(hidden_size=z["expert_hidden"], num_layers=z["expert_layers"],
                                         num_heads=z["expert_heads"], ffn_multiple_of=32,
                                         timestep_embed_dim=z["expert_hidden"], max_action_dim=MAX_ACTION_DIM,
                                         max_action_horizon=MAX_ACTION_HORIZON)
    cfg = MolmoAct2Config(
        vit_config=vit, adapter_config=adapter, text_config=text, action_expert_config=expert,
        image_start_token_id=ids["<im_start>"], low_res_image_start_token_id=ids["<low_res_im_start>"],
        image_end_token_id=ids["<im_end>"], image_low_res_id=ids["<im_low>"], image_patch_id=ids["<im_patch>"],
        image_col_id=ids["<im_col>"], frame_start_token_id=ids["<frame_start>"], frame_end_token_id=ids["<frame_end>"],
        add_action_expert=True, max_action_dim=MAX_ACTION_DIM, max_action_horizon=MAX_ACTION_HORIZON,
        n_obs_steps=1, action_mode="both", state_format="discrete", flow_matching_num_steps=10,
        enable_depth_reasoning=think, num_depth_codes=NUM_DEPTH_CODES,
        action_expert_depth_gate=think, action_expert_depth_gate_per_layer=think,
        action_output_token_id=ids["<action_output>"], action_start_token_id=ids["<action_start>"],
        action_end_token_id=ids["<action_end>"], action_token_start_id=ids["<action_0>"],
        num_action_tokens=num_action_tokens,
        depth_output_token_id=ids["<depth_output>"], depth_start_token_id=ids["<depth_start>"],
        depth_end_token_id=ids["<depth_end>"], depth_token_start_id=ids["<depth_0>"],
        num_depth_tokens=NUM_DEPTH_TOKENS,
        state_start_token_id=ids["<state_start>"], state_end_token_id=ids["<state_end>"],
        state_token_start_id=ids["<state_0>"], num_state_tokens=NUM_STATE_TOKENS,
        add_setup_tokens=True, add_control_tokens=True,
        eos_token_id=ids["<|endoftext|>"], pad_token_id=ids["<|endoftext|>"], bos_token_id=None,
        tie_word_embeddings=False,
    )
    cfg.architectures = ["MolmoAct2ForConditionalGeneration"]
    return cfg


def _craft_termination(model, ids: dict[str, int], chain: list[int], action_start_id: int) -> None:
    """Reserve class dimensions so greedy decoding follows the trained model's token grammar."""
    import torch

    wte = model.model.transformer.wte
    emb = wte.embedding.data  # (vocab_size, hidden); image tokens live in new_embedding
    head = model.lm_head.weight.data  # (vocab_size, hidden)
    successors: list[tuple[list[int], int]] = []  # (tokens of one class, successor)
    depth_ids = [ids[f"<depth_{i}>"] for i in range(NUM_DEPTH_TOKENS)]
    successors.append((depth_ids, ids["<depth_end>"]))
    successors.append(([ids["<action_output>"], ids["<depth_end>"]], ids["<action_start>"]))
    chain_ids = [action_start_id + t for t in chain]
    seq = [ids["<action_start>"], *chain_ids, ids["<action_end>"], ids["<|endoftext|>"]]
    for a, b in zip(seq[:-1], seq[1:]):
        successors.append(([a], b))
    k = len(successors)
    hidden = emb.shape[1]
    if k > hidden // 2:
        raise RuntimeError(f"{k} successor classes do not fit into hidden size {hidden}")
    with torch.no_grad():
        emb[:, :k] = 0.0
        wte.new_embedding.data[:, :k] = 0.0
        head[:, :k] = 0.0
        for c, (tokens, nxt) in enumerate(successors):
            for t in tokens:
                emb[t, c] = 24.0
            head[nxt, c] = 12.0


def _norm_stats() -> dict:
    by_tag = {}
    for tag, spec in TAGS.items():
        low = np.asarray(spec["low"], dtype=np.float64)
        high = np.asarray(spec["high"], dtype=np.float64)
        s_low = np.asarray(spec.get("state_low", low), dtype=np.float64)
        s_high = np.asarray(spec.get("state_high", high), dtype=np.float64)

        def stats(lo, hi):
            span = hi - lo
            return {"q01": lo.tolist(), "q99": hi.tolist(), "min": (lo - 0.05 * span).tolist(),
                    "max": (hi + 0.05 * span).tolist(), "mean": ((lo + hi) / 2).tolist(),
                    "std": (span / 4).tolist()}

        by_tag[tag] = {
            "action_stats": stats(low, high), "state_stats": stats(s_low, s_high),
            "setup_type": spec["setup_type"], "control_mode": spec["control_mode"],
            "action_horizon": spec["horizon"], "n_action_steps": spec["horizon"],
            "camera_keys": spec["cameras"],
        }
    return {"norm_mode": "q01_q99", "metadata_by_tag": by_tag}


def build_tiny_checkpoint(out_dir: str | os.PathLike, think: bool = False, seed: int = 0,
                          discrete_tag: str = DEFAULT_DISCRETE_TAG, size: str = "tiny") -> Path:
    """Build the checkpoint (``size``: a key of ``SIZES``) into ``out_dir`` (created; written
    atomically) and return its path."""
    if size not in SIZES:
        raise ValueError(f"size {size!r}: one of {', '.join(SIZES)}")
    px = SIZES[size]["image"]
    import torch
    from lerobot.policies.molmoact2.molmoact2_hf_model.modeling_molmoact2 import MolmoAct2ForConditionalGeneration

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        proc = _fit_action_tokenizer(tmp, seed)
        num_action_tokens = len(proc.bpe_tokenizer.get_vocab())
        ids = _build_text_tokenizer(tmp, num_action_tokens)
        spec = TAGS[discrete_tag]
        chain = _discrete_chain(proc, spec["horizon"] * spec["action_dim"])

        cfg = _make_config(ids, num_action_tokens, think, size)
        torch.manual_seed(seed)
        model = MolmoAct2ForConditionalGeneration(cfg).eval()
        _craft_termination(model, ids, chain, ids["<action_0>"])
        model.save_pretrained(str(tmp), safe_serialization=True)
        (tmp / "processor_config.json").write_text(json.dumps({
            "processor_class": "MolmoAct2Processor",
            "image_processor": {
                "image_processor_type": "MolmoAct2ImageProcessor",
                "size": {"height": px, "width": px}, "max_crops": 1, "overlap_margins": [4, 4],
                "crop_mode": "overlap-and-resize-c2", "patch_size": 14, "pooling_size": [2, 2],
                "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_convert_rgb": True,
            },
            "video_processor": {"video_processor_type": "MolmoAct2VideoProcessor"},
            "image_use_col_tokens": True, "use_single_crop_col_tokens": False,
            "use_single_crop_start_token": True, "video_use_col_tokens": False,
            "use_frame_special_tokens": True,
        }, indent=1))
        (tmp / "norm_stats.json").write_text(json.dumps(_norm_stats(), indent=1))
        (tmp / "tiny_checkpoint.json").write_text(json.dumps({
            "builder": "molmoact2_policy.core.tiny_checkpoint", "fingerprint": builder_fingerprint(),
            "think": think, "seed": seed, "size": size, "discrete_tag": discrete_tag, "discrete_chain": chain,
            "parameters": int(sum(p.numel() for p in model.parameters())),
        }, indent=1))
        os.chmod(tmp, 0o755)
        for f in tmp.rglob("*"):
            os.chmod(f, 0o755 if f.is_dir() else 0o644)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def cached_tiny_checkpoint(cache_root: str | os.PathLike, think: bool = False, size: str = "tiny") -> Path:
    """Build once into ``cache_root/<fingerprint>/<variant>`` and reuse it while the builder is unchanged."""
    out = Path(cache_root) / builder_fingerprint() / (size + ("-think" if think else ""))
    if all((out / f).is_file() for f in REQUIRED_FILES):
        return out
    import fcntl

    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not all((out / f).is_file() for f in REQUIRED_FILES):
            build_tiny_checkpoint(out, think=think, size=size)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="molmoact2-build-tiny-checkpoint",
                                     description="Build an offline tiny random-weight MolmoAct2 checkpoint (HF layout).")
    parser.add_argument("--out", required=True, help="output directory (replaced if it exists)")
    parser.add_argument("--think", action="store_true", help="build the MolmoAct2-Think variant (depth reasoning)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", default="tiny", choices=sorted(SIZES), help="model dimensions (tiny: tests; small: learns the sim task)")
    parser.add_argument("--discrete-tag", default=DEFAULT_DISCRETE_TAG, choices=sorted(TAGS),
                        help="norm tag whose horizon x action_dim the discrete token chain decodes to")
    args = parser.parse_args(argv)
    out = build_tiny_checkpoint(args.out, think=args.think, seed=args.seed, discrete_tag=args.discrete_tag, size=args.size)
    meta = json.loads((out / "tiny_checkpoint.json").read_text())
    print(f"{args.size} MolmoAct2{'-Think' if args.think else ''} checkpoint: {out} ({meta['parameters']} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
