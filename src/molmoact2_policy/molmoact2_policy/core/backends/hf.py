"""``hf`` backend: a MolmoAct2 checkpoint in the released Hugging Face layout, run in-process.

Loads offline from a local directory (MolmoAct2, -Think, -DROID, -BimanualYAM, -SO100_101, -LIBERO,
-Think-LIBERO snapshots, or the tiny test checkpoint) with the model classes lerobot 0.6.1 ships,
never ``trust_remote_code`` and never the hub.

The transformers 5.5 re-initialisation trap: ``from_pretrained`` of the vendored class runs its
``_init_weights`` (which writes ``.data`` directly) over about half of the loaded tensors. Like
LeRobot, the loader therefore repeats a strict safetensors load after ``from_pretrained``
(``strict_reload``); ``test_inference_hf.py`` fails if that reload is removed.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .base import (
    ACTION_MODES,
    BackendError,
    BackendInfo,
    CheckpointError,
    PolicyBackend,
    PolicyRequest,
    PolicyResult,
    RtcInputs,
    TagInfo,
    match_camera_keys,
)

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
DTYPES = ("float32", "bfloat16", "float16")


def check_checkpoint_dir(path: str | os.PathLike) -> Path:
    """Refuse a missing or incomplete HF checkpoint directory, naming the missing file."""
    p = Path(path).expanduser()
    if not str(path):
        raise CheckpointError("no checkpoint directory given (parameter 'checkpoint')")
    if not p.is_dir():
        raise CheckpointError(f"checkpoint directory {p} does not exist")
    missing = [f for f in ("config.json", "processor_config.json", "tokenizer_config.json") if not (p / f).is_file()]
    if not (p / SAFE_WEIGHTS_NAME).is_file() and not (p / SAFE_WEIGHTS_INDEX_NAME).is_file():
        missing.append(SAFE_WEIGHTS_NAME)
    if not (p / "tokenizer.json").is_file() and not ((p / "vocab.json").is_file() and (p / "merges.txt").is_file()):
        missing.append("tokenizer.json")
    try:
        stats_name = json.loads((p / "config.json").read_text()).get("norm_stats_filename") or "norm_stats.json"
    except (OSError, json.JSONDecodeError):
        stats_name = "norm_stats.json"
    if not (p / stats_name).is_file():
        missing.append(stats_name)
    if (p / SAFE_WEIGHTS_INDEX_NAME).is_file():
        try:
            shards = set(json.loads((p / SAFE_WEIGHTS_INDEX_NAME).read_text())["weight_map"].values())
        except (OSError, json.JSONDecodeError, KeyError) as exc:
            raise CheckpointError(f"checkpoint {p}: unreadable {SAFE_WEIGHTS_INDEX_NAME}: {exc}") from None
        missing += sorted(s for s in shards if not (p / s).is_file())
    if missing:
        raise CheckpointError(f"checkpoint {p} is incomplete: missing {', '.join(missing)}")
    return p


def read_tag_infos(stats_path: str | os.PathLike) -> dict[str, TagInfo]:
    """Norm tags of a norm_stats.json (``metadata_by_tag``) with their dims, horizon and control mode."""
    try:
        payload = json.loads(Path(stats_path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read norm stats {stats_path}: {exc}") from None
    by_tag = payload.get("metadata_by_tag")
    if not isinstance(by_tag, dict) or not by_tag:
        raise CheckpointError(f"norm stats {stats_path} has no 'metadata_by_tag' mapping")

    def dim(stats: Any) -> int | None:
        if not isinstance(stats, dict):
            return None
        for key in ("q01", "q99", "mean", "std", "min", "max", "mask", "names"):
            v = stats.get(key)
            if isinstance(v, (list, tuple)):
                return len(v)
        return None

    def pos_int(v: Any) -> int | None:
        return int(v) if v is not None and int(v) > 0 else None

    return {
        str(tag): TagInfo(
            name=str(tag),
            state_dim=dim(meta.get("state_stats")),
            action_dim=dim(meta.get("action_stats")),
            action_horizon=pos_int(meta.get("action_horizon")),
            n_action_steps=pos_int(meta.get("n_action_steps")),
            control_mode=str(meta.get("control_mode") or ""),
            setup_type=str(meta.get("setup_type") or ""),
            cameras=_camera_keys(meta),
        )
        for tag, meta in by_tag.items()
        if isinstance(meta, dict)
    }


def _camera_keys(meta: dict) -> tuple[str, ...] | None:
    for key in ("camera_keys", "image_keys", "cameras"):
        v = meta.get(key)
        if isinstance(v, (list, tuple)) and v:
            return tuple(str(x) for x in v)
    return None


def strict_reload(model: Any, checkpoint: str | os.PathLike) -> None:
    """Load every tensor of the checkpoint's safetensors into ``model``, strictly.

    Repairs the tensors transformers 5.5's ``from_pretrained`` re-initialised; refuses a checkpoint
    whose key space differs from the local model class.
    """
    from safetensors.torch import load_file

    ckpt = Path(checkpoint)
    model_keys = set(model.state_dict())
    index = ckpt / SAFE_WEIGHTS_INDEX_NAME
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        files = sorted(set(weight_map.values()))
        file_keys = set(weight_map)
    else:
        files = [SAFE_WEIGHTS_NAME]
        file_keys = None
    loaded: set[str] = set()
    for name in files:
        state = load_file(str(ckpt / name), device="cpu")
        loaded |= set(state)
        model.load_state_dict(state, strict=False)
        del state
    if file_keys is not None and file_keys != loaded:
        raise CheckpointError(f"checkpoint {ckpt}: shard contents differ from {SAFE_WEIGHTS_INDEX_NAME}")
    missing, unexpected = sorted(model_keys - loaded), sorted(loaded - model_keys)
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {ckpt} does not match the lerobot 0.6.1 MolmoAct2 model: "
            f"missing {missing[:6]}{'...' if len(missing) > 6 else ''}, "
            f"unexpected {unexpected[:6]}{'...' if len(unexpected) > 6 else ''}")


def load_hf_model(checkpoint: str | os.PathLike, dtype: str = "float32", device: str = "cpu",
                  repair_reinit: bool = True):
    """The MolmoAct2ForConditionalGeneration of a local checkpoint (offline), weights exactly as saved.

    ``repair_reinit=False`` exists only so a test can show the transformers 5.5 trap.
    """
    import torch
    from lerobot.policies.molmoact2.molmoact2_hf_model.configuration_molmoact2 import MolmoAct2Config
    from lerobot.policies.molmoact2.molmoact2_hf_model.modeling_molmoact2 import (
        MolmoAct2ForConditionalGeneration,
    )

    ckpt = check_checkpoint_dir(checkpoint)
    if dtype not in DTYPES:
        raise BackendError(f"dtype '{dtype}' must be one of {', '.join(DTYPES)}")
    torch_dtype = getattr(torch, dtype)
    try:
        config = MolmoAct2Config.from_pretrained(str(ckpt), local_files_only=True)
        model = MolmoAct2ForConditionalGeneration.from_pretrained(
            str(ckpt), config=config, dtype=torch_dtype, local_files_only=True, low_cpu_mem_usage=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"cannot load MolmoAct2 checkpoint {ckpt}: {exc}") from exc
    if repair_reinit:
        strict_reload(model, ckpt)
    model.to(device=device)
    model.eval()
    return model


def load_processor(checkpoint: str | os.PathLike):
    """The MolmoAct2Processor (image processor + Qwen2 tokenizer) of a local checkpoint."""
    from lerobot.policies.molmoact2.processor_molmoact2 import _load_local_molmoact2_processor

    try:
        return _load_local_molmoact2_processor(str(checkpoint))
    except (OSError, ValueError, TypeError) as exc:
        raise CheckpointError(f"cannot load the processor/tokenizer of {checkpoint}: {exc}") from exc


def load_action_tokenizer(path: str | os.PathLike):
    """A local OpenFAST action tokenizer directory (discrete mode); never downloads."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise CheckpointError(
            f"discrete action mode needs a local OpenFAST tokenizer directory; {p} does not exist "
            "(parameter 'action_tokenizer'; the released one is allenai/MolmoAct2-FAST-Tokenizer)")
    if not (p / "tokenizer.json").is_file():
        raise CheckpointError(f"OpenFAST tokenizer directory {p} is incomplete: missing tokenizer.json")
    from lerobot.policies.molmoact2.molmoact2_hf_model.action_tokenizer import UniversalActionProcessor

    return UniversalActionProcessor.from_pretrained_local(str(p))


class DepthState:
    """Think's depth cache, carried from call to call within an episode."""

    def __init__(self) -> None:
        self.cache: dict[str, Any] | None = None

    def reset(self) -> None:
        self.cache = None

    def update_mask(self, first_image: np.ndarray, num_codes: int) -> np.ndarray:
        """Which cells this call re-predicts: the model's own rule (eq. 6) against the cached image."""
        from lerobot.policies.molmoact2.molmoact2_hf_model import modeling_molmoact2 as mm

        if not self.cache or self.cache.get("image") is None or self.cache.get("depth_bins") is None:
            return np.ones(num_codes, dtype=bool)
        if np.asarray(self.cache["depth_bins"]).reshape(-1).shape[0] != num_codes:
            return np.ones(num_codes, dtype=bool)
        current = mm._normalize_image_for_cache(first_image)
        previous = mm._normalize_image_for_cache(self.cache["image"])
        return np.asarray(mm._compute_depth_update_mask(current, previous, num_depth_codes=num_codes), dtype=bool)


class HfBackend(PolicyBackend):
    """MolmoAct2ForConditionalGeneration.predict_action on a local HF checkpoint."""

    kind = "hf"

    def __init__(
        self,
        checkpoint: str,
        device: str = "cpu",
        dtype: str = "float32",
        action_mode: str = "continuous",
        think: bool = False,
        adaptive_depth: bool = True,
        num_steps: int | None = None,
        n_action_steps: int | None = None,
        cuda_graph: bool = False,
        action_tokenizer: str | None = None,
        num_threads: int | None = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise BackendError(f"hf backend: unknown options {', '.join(sorted(unknown))}")
        if action_mode not in ACTION_MODES:
            raise BackendError(f"action_mode '{action_mode}' must be one of {', '.join(ACTION_MODES)}")
        import torch

        if num_threads:
            torch.set_num_threads(int(num_threads))
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"device '{device}' requested but CUDA is not available")
        self.checkpoint = check_checkpoint_dir(checkpoint)
        self.device = device
        self.action_mode = action_mode
        self.think = bool(think)
        self.adaptive_depth = bool(adaptive_depth)
        self.num_steps = int(num_steps) if num_steps else None
        self.n_action_steps = int(n_action_steps) if n_action_steps else None
        # CUDA graphs only exist on CUDA; on the CPU the model code ignores the flag.
        self.cuda_graph = bool(cuda_graph) and device.startswith("cuda")
        self.model = load_hf_model(self.checkpoint, dtype=dtype, device=device)
        cfg = self.model.config
        if self.think and not bool(getattr(cfg, "enable_depth_reasoning", False)):
            raise CheckpointError(
                f"think=true but checkpoint {self.checkpoint} was not trained with depth reasoning "
                "(config.enable_depth_reasoning is false): use a MolmoAct2-Think checkpoint")
        ckpt_mode = str(getattr(cfg, "action_mode", "both"))
        if action_mode == "continuous" and ckpt_mode not in ("continuous", "both"):
            raise CheckpointError(f"checkpoint action_mode is '{ckpt_mode}': continuous inference is not possible")
        if action_mode == "discrete" and ckpt_mode not in ("discrete", "both"):
            raise CheckpointError(f"checkpoint action_mode is '{ckpt_mode}': discrete inference is not possible")
        self.processor = load_processor(self.checkpoint)
        self.action_tokenizer = None
        if action_mode == "discrete":
            self.action_tokenizer = load_action_tokenizer(action_tokenizer or self.checkpoint / "action_tokenizer")
        stats_name = getattr(cfg, "norm_stats_filename", None) or "norm_stats.json"
        self._tags = read_tag_infos(self.checkpoint / stats_name)
        self._num_codes = int(getattr(cfg, "num_depth_codes", 100) or 100)
        self._num_depth_tokens = int(getattr(cfg, "num_depth_tokens", 128) or 128)
        self.depth = DepthState()
        self._lock = threading.Lock()

    def info(self) -> BackendInfo:
        return BackendInfo(
            kind=self.kind, model_id=self.checkpoint.name, tags=dict(self._tags), action_mode=self.action_mode,
            think=self.think, rtc=self.action_mode == "continuous", extra={"device": self.device, "cuda_graph": self.cuda_graph,
                                     "checkpoint": str(self.checkpoint)})

    def reset(self) -> None:
        with self._lock:
            self.depth.reset()

    def predict(self, request: PolicyRequest) -> PolicyResult:
        import torch

        request.validate()
        if request.norm_tag not in self._tags:
            raise BackendError(f"norm tag '{request.norm_tag}' is not in the checkpoint (tags: {', '.join(sorted(self._tags))})")
        images = self._images_in_tag_order(request)
        with self._lock:
            t0 = time.perf_counter()
            generator = None
            if request.seed is not None:
                generator = torch.Generator(device=self.device).manual_seed(int(request.seed))
            refreshed = None
            if self.think:
                refreshed = (self.depth.update_mask(images[0], self._num_codes)
                             if self.adaptive_depth else np.ones(self._num_codes, dtype=bool))
            t1 = time.perf_counter()
            try:
                if request.rtc is not None:
                    # RTC's guidance takes one autograd step per flow step: no inference_mode here
                    with torch.no_grad():
                        out = self._predict_action_rtc(request, images, generator)
                else:
                    # inference_mode: no autograd bookkeeping (version counters, views) on any tensor of the call
                    with torch.inference_mode():
                        out = self._predict_action(request, images, generator)
            except (RuntimeError, ValueError) as exc:
                raise BackendError(f"MolmoAct2 predict_action failed: {exc}") from exc
            t2 = time.perf_counter()
            actions = out.actions[0].detach().to("cpu", dtype=torch.float32).numpy().copy()
            result = PolicyResult(actions=actions, num_depth_codes=self._num_depth_tokens)
            if self.think and out.depth_bins is not None:
                codes = out.depth_bins[0].detach().cpu().numpy().reshape(-1)
                side = int(round(np.sqrt(codes.size)))
                result.depth_rows, result.depth_cols = (side, side) if side * side == codes.size else (1, codes.size)
                result.depth_codes = np.clip(codes, 0, 255).astype(np.uint8)
                result.depth_refreshed = refreshed if refreshed is not None and refreshed.size == codes.size \
                    else np.ones(codes.size, dtype=bool)
                self.depth.cache = out.depth_cache
            t3 = time.perf_counter()
            result.timings = {"prepare": t1 - t0, "model": t2 - t1, "output": t3 - t2}
        return result

    def _images_in_tag_order(self, request: PolicyRequest) -> list[np.ndarray]:
        """The request's images in the order of the norm tag's cameras, picked by name; a request whose
        camera names do not match the tag's is refused naming both sides (unnamed requests: as given)."""
        tag_cams = self._tags[request.norm_tag].cameras
        if not tag_cams or not request.camera_names:
            return list(request.images)
        matched, unmatched, missing = match_camera_keys(request.camera_names, tag_cams)
        if unmatched or missing:
            raise BackendError(
                f"camera name mismatch: the request gives cameras {', '.join(request.camera_names)}, checkpoint "
                f"'{self.checkpoint.name}' takes {', '.join(tag_cams)} for norm tag '{request.norm_tag}'")
        return [request.images[request.camera_names.index(matched[str(k)])] for k in tag_cams]

    def _rtc_processor(self, rtc: RtcInputs):
        from lerobot.configs import RTCAttentionSchedule
        from lerobot.policies.rtc.configuration_rtc import RTCConfig
        from lerobot.policies.rtc.modeling_rtc import RTCProcessor

        key = (rtc.prefix_attention_schedule, float(rtc.max_guidance_weight), int(rtc.execution_horizon))
        if getattr(self, "_rtc_key", None) != key:
            self._rtc = RTCProcessor(RTCConfig(enabled=True, max_guidance_weight=key[1], execution_horizon=key[2],
                                               prefix_attention_schedule=RTCAttentionSchedule(key[0])))
            self._rtc_key = key
        return self._rtc

    def _predict_action_rtc(self, request: PolicyRequest, images: list[np.ndarray], generator):
        """predict_action with LeRobot's RTC guidance in the flow loop.

        The HF model's ``predict_action`` has no RTC inputs; its flow loop
        (``_run_action_flow_loop`` of the inner model) is the one place guidance goes, so for this
        call the loop is LeRobot's RTC loop (as ``MolmoAct2Policy._generate_actions_from_inputs_with_rtc``
        runs it: ``RTCProcessor.denoise_step`` around each velocity), on the previous chunk's
        left-over normalised like the model's actions. Without CUDA graphs (the guidance needs autograd).
        """
        import torch

        if self.action_mode != "continuous":
            raise BackendError("RTC inputs need continuous (flow-matching) inference; discrete mode has no flow to guide")
        rtc = request.rtc
        tag = self._tags[request.norm_tag]
        rtc.validate(tag.action_dim)
        n_obs_steps = int(getattr(self.model.config, "n_obs_steps", 1) or 1)
        stats = self.model._get_robot_stats()
        normaliser = stats.action_normalizers.get(str(request.norm_tag))
        left = np.asarray(rtc.prev_chunk_left_over, dtype=np.float32)
        left = np.asarray(normaliser.normalize(left) if normaliser is not None else left, dtype=np.float32)
        backbone = self.model.model
        expert = backbone._require_action_expert()
        dtype = expert.action_embed.weight.dtype
        # the chunk's step 0 is trajectory row n_obs_steps - 1 (predict_action's slice)
        prefix = np.zeros((n_obs_steps - 1 + left.shape[0], left.shape[1]), np.float32)
        prefix[n_obs_steps - 1:] = left
        prefix_t = torch.as_tensor(prefix, device=self.device, dtype=dtype).unsqueeze(0)
        delay = int(rtc.inference_delay) + n_obs_steps - 1
        processor = self._rtc_processor(rtc)
        mask_enabled = backbone.config.mask_action_dim_padding

        def rtc_flow_loop(inputs, steps: int):
            dt = 1.0 / steps
            trajectory = inputs.trajectory
            pad = inputs.action_dim_is_pad
            for idx in range(steps):
                modulation = inputs.modulations[idx]

                def denoise(x, modulation=modulation):
                    # no graph through the expert: the guidance differentiates x_t - t * v_t with
                    # respect to x_t only (v_t is computed before x_t requires grad), as in LeRobot;
                    # and the modulation cache may hold inference-mode tensors of earlier calls
                    with torch.no_grad():
                        velocity = expert.forward_with_context(x, modulation.conditioning, context=inputs.context,
                                                               modulation=modulation)
                    # LeRobot's RTC works on the negated velocity (its time runs the other way)
                    return -backbone._mask_action_dim_tensor(velocity, action_dim_is_pad=pad, enabled=mask_enabled)

                velocity = -processor.denoise_step(x_t=trajectory, prev_chunk_left_over=prefix_t,
                                                   inference_delay=delay, time=1.0 - idx / steps,
                                                   original_denoise_step_partial=denoise,
                                                   execution_horizon=int(rtc.execution_horizon) + n_obs_steps - 1)
                trajectory = backbone._mask_action_dim_tensor(trajectory + dt * velocity, action_dim_is_pad=pad,
                                                              enabled=mask_enabled)
            return trajectory

        backbone._run_action_flow_loop = rtc_flow_loop  # this call only (an instance attribute, removed below)
        try:
            return self._predict_action(request, images, generator, cuda_graph=False)
        finally:
            del backbone._run_action_flow_loop

    def _predict_action(self, request: PolicyRequest, images: list[np.ndarray], generator, cuda_graph: bool | None = None):
        return self.model.predict_action(
            processor=self.processor,
            images=images,
            task=request.instruction,
            state=np.asarray(request.state, dtype=np.float32),
            norm_tag=request.norm_tag,
            inference_action_mode=self.action_mode,
            enable_depth_reasoning=self.think,
            enable_adaptive_depth=self.adaptive_depth,
            depth_cache=self.depth.cache if self.think else None,
            action_tokenizer=self.action_tokenizer,
            num_steps=request.num_steps or self.num_steps,
            n_action_steps=self.n_action_steps,
            generator=generator,
            enable_cuda_graph=self.cuda_graph if cuda_graph is None else cuda_graph,
        )
