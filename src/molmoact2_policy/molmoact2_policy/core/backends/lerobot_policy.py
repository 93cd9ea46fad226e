"""``lerobot`` backend: LeRobot's ``MolmoAct2Policy`` (users' fine-tunes, LeRobot processors).

Two checkpoint shapes:

* a LeRobot policy directory (``config.json`` with ``"type": "molmoact2"``, ``model.safetensors``,
  ``policy_preprocessor.json`` / ``policy_postprocessor.json``, as ``save_pretrained`` writes them):
  loaded with ``MolmoAct2Policy.from_pretrained`` and its saved processor pipelines;
* a MolmoAct2 HF checkpoint directory: a ``MolmoAct2Config`` is built for it (norm tag, camera keys,
  dims from norm_stats.json) and LeRobot's own pre/post-processors are made with
  ``make_molmoact2_pre_post_processors``.

Cameras are matched by name: each request image goes under the checkpoint's image key of its camera
(``observation.images.<camera>``), never by position or by sorted key order; a camera name that no
image key names (or an image key no camera names) is refused, naming both sides.

Inference always calls ``predict_action_chunk``, never ``select_action`` (which asserts when
real-time chunking is on). The policy's own weights loader repeats the strict safetensors load that
undoes transformers 5.5's re-initialisation. LeRobot's policy does not support Think.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .base import (ACTION_MODES, BackendError, BackendInfo, CheckpointError, PolicyBackend, PolicyRequest, PolicyResult,
                   RtcInputs, match_camera_keys)
from .hf import check_checkpoint_dir, read_tag_infos


PORTABLE_KEYS = ("checkpoint_path", "discrete_action_tokenizer")


def _portable_config(ckpt: Path):
    """A policy directory whose base-model paths are relative (a portable fine-tune, e.g.
    ``molmoact2-train-demo``'s, which carries its base model in ``base_model/``) has them resolved
    against the directory, wherever it was copied or cloned; LeRobot itself would resolve them
    against the working directory. Returns (config or None, processor overrides)."""
    raw = json.loads((ckpt / "config.json").read_text())
    rel = {k: raw[k] for k in PORTABLE_KEYS if isinstance(raw.get(k), str) and raw[k] and not Path(raw[k]).is_absolute()
           and (ckpt / raw[k]).exists()}
    if not rel:
        return None, {}
    from lerobot.configs.policies import PreTrainedConfig

    config = PreTrainedConfig.from_pretrained(str(ckpt), local_files_only=True)
    paths = {k: str((ckpt / v).resolve()) for k, v in rel.items()}
    for k, v in paths.items():
        setattr(config, k, v)
    return config, paths


class LeRobotBackend(PolicyBackend):
    kind = "lerobot"

    def __init__(self, checkpoint: str, norm_tag: str | None = None, camera_names: list[str] | None = None,
                 device: str = "cpu", dtype: str = "float32", action_mode: str = "continuous",
                 num_steps: int | None = None, n_action_steps: int | None = None, cuda_graph: bool = False,
                 action_tokenizer: str | None = None, num_threads: int | None = None, **unknown: Any) -> None:
        if unknown:
            raise BackendError(f"lerobot backend: unknown options {', '.join(sorted(unknown))}")
        if action_mode not in ACTION_MODES:
            raise BackendError(f"action_mode '{action_mode}' must be one of {', '.join(ACTION_MODES)}")
        import torch

        if num_threads:
            torch.set_num_threads(int(num_threads))
        ckpt = Path(checkpoint).expanduser()
        if not ckpt.is_dir():
            raise CheckpointError(f"checkpoint directory {ckpt} does not exist")
        if not (ckpt / "config.json").is_file():
            raise CheckpointError(f"checkpoint {ckpt} is incomplete: missing config.json")
        self.checkpoint = ckpt
        self.action_mode = action_mode
        self.num_steps = int(num_steps) if num_steps else None
        self.device = device
        self._lock = threading.Lock()
        self._camera_names = list(camera_names or [])
        cfg_json = json.loads((ckpt / "config.json").read_text())
        if cfg_json.get("type") == "molmoact2":
            self._load_policy_dir(ckpt, device, action_mode)
        else:
            self._load_from_hf(ckpt, norm_tag, device, dtype, action_mode, n_action_steps, cuda_graph, action_tokenizer)
        self.policy.eval()
        if self._camera_names:
            self._key_of_camera(self._camera_names)  # refuse a camera mismatch at load time, not at the first call

    # ------------------------------------------------------------------ loading
    def _load_policy_dir(self, ckpt: Path, device: str, action_mode: str) -> None:
        from lerobot.configs.types import FeatureType
        from lerobot.policies.molmoact2.modeling_molmoact2 import MolmoAct2Policy
        from lerobot.processor import PolicyProcessorPipeline
        from lerobot.processor.converters import policy_action_to_transition, transition_to_policy_action

        for name in ("model.safetensors", "policy_preprocessor.json", "policy_postprocessor.json"):
            if not (ckpt / name).is_file():
                raise CheckpointError(f"LeRobot policy directory {ckpt} is incomplete: missing {name}")
        try:
            config, paths = _portable_config(ckpt)
            self.policy = MolmoAct2Policy.from_pretrained(str(ckpt), config=config, local_files_only=True)
            self.policy.to(device)
            self.pre = PolicyProcessorPipeline.from_pretrained(str(ckpt), config_filename="policy_preprocessor.json",
                                                               overrides={"device_processor": {"device": device},
                                                                          **({"molmoact2_pack_inputs": paths} if paths else {})})
            self.post = PolicyProcessorPipeline.from_pretrained(
                str(ckpt), config_filename="policy_postprocessor.json",
                to_transition=policy_action_to_transition, to_output=transition_to_policy_action)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"cannot load LeRobot MolmoAct2 policy {ckpt}: {exc}") from exc
        cfg = self.policy.config
        if cfg.inference_action_mode is None:
            # a fine-tune's config leaves it unset (lerobot-train does): it is this backend's mode, passed
            # to every predict_action_chunk; LeRobot's supports_rtc() reads it from the config
            cfg.inference_action_mode = action_mode
        self.norm_tag = str(cfg.norm_tag or "")
        # the policy's image keys: its config's, else its visual input features (the order LeRobot's
        # processor uses); images are matched to them by name, so their order never pairs them
        self.image_keys = list(cfg.image_keys) or [k for k, f in cfg.input_features.items() if f.type == FeatureType.VISUAL]
        hf_dir = Path(cfg.checkpoint_path).expanduser()
        stats = hf_dir / "norm_stats.json"
        self._tags = read_tag_infos(stats) if stats.is_file() else {}
        self._model_id = ckpt.name

    def _load_from_hf(self, ckpt: Path, norm_tag, device, dtype, action_mode, n_action_steps, cuda_graph, action_tokenizer) -> None:
        from lerobot.configs.types import FeatureType, PolicyFeature
        from lerobot.policies.molmoact2.configuration_molmoact2 import MolmoAct2Config
        from lerobot.policies.molmoact2.modeling_molmoact2 import MolmoAct2Policy
        from lerobot.policies.molmoact2.processor_molmoact2 import make_molmoact2_pre_post_processors

        check_checkpoint_dir(ckpt)
        self._tags = read_tag_infos(ckpt / "norm_stats.json")
        if not norm_tag:
            raise BackendError("lerobot backend on an HF checkpoint needs a norm tag")
        tag = self._tags.get(norm_tag)
        if tag is None:
            raise BackendError(f"norm tag '{norm_tag}' is not in {ckpt} (tags: {', '.join(sorted(self._tags))})")
        cams = self._camera_names or list(tag.cameras or [])
        if not cams:
            raise BackendError("lerobot backend needs the model camera order (camera_names)")
        if tag.cameras:  # the checkpoint's cameras, in its order, each matched to a camera by name
            matched, unmatched, missing = match_camera_keys(cams, tag.cameras)
            if unmatched or missing:
                raise BackendError(
                    f"camera name mismatch: embodiment cameras {', '.join(cams)} vs checkpoint '{ckpt.name}' "
                    f"cameras {', '.join(tag.cameras)} for norm tag '{norm_tag}'")
            cams = [matched[str(k)] for k in tag.cameras]
        self.image_keys = [f"observation.images.{c}" for c in cams]
        horizon = int(tag.action_horizon or 30)
        tok = action_tokenizer or str(ckpt / "action_tokenizer")
        if action_mode == "discrete" and not Path(tok).is_dir():
            raise CheckpointError(f"discrete action mode needs a local OpenFAST tokenizer directory; {tok} does not exist")
        try:
            cfg = MolmoAct2Config(
                checkpoint_path=str(ckpt), norm_tag=norm_tag, inference_action_mode=action_mode, model_dtype=dtype,
                chunk_size=horizon, n_action_steps=int(n_action_steps or tag.n_action_steps or horizon),
                image_keys=list(self.image_keys), discrete_action_tokenizer=tok,
                enable_inference_cuda_graph=bool(cuda_graph), device=device,
                input_features={**{k: PolicyFeature(type=FeatureType.VISUAL, shape=(3, 224, 224)) for k in self.image_keys},
                                "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(int(tag.state_dim or 0),))},
                output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(int(tag.action_dim or 32),))},
            )
            self.policy = MolmoAct2Policy(cfg)
            self.policy.to(device)
            self.pre, self.post = make_molmoact2_pre_post_processors(cfg)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"cannot build a LeRobot MolmoAct2Policy for {ckpt}: {exc}") from exc
        self.norm_tag = norm_tag
        self._model_id = ckpt.name

    # ------------------------------------------------------------------ interface
    def info(self) -> BackendInfo:
        tags = {self.norm_tag: self._tags[self.norm_tag]} if self.norm_tag in self._tags else dict(self._tags)
        return BackendInfo(kind=self.kind, model_id=self._model_id, tags=tags, action_mode=self.action_mode,
                           think=False, camera_keys=tuple(self.image_keys), rtc=self._rtc_refusal() is None,
                           extra={"image_keys": self.image_keys, "device": self.device,
                                  "rtc_refusal": self._rtc_refusal()})

    def _key_of_camera(self, camera_names: list[str]) -> dict[str, str]:
        """Camera name -> the policy's image key that names it; a mismatch is refused naming both sides."""
        matched, unmatched, missing = match_camera_keys(camera_names, self.image_keys)
        if unmatched or missing:
            why = ([f"no image key for {', '.join(missing)}"] if missing else []) + \
                  ([f"no camera for {', '.join(unmatched)}"] if unmatched else [])
            raise BackendError(
                f"camera name mismatch: embodiment cameras {', '.join(camera_names)} vs checkpoint "
                f"'{self._model_id}' image keys {', '.join(self.image_keys)} ({'; '.join(why)})")
        return {cam: key for key, cam in matched.items()}

    def reset(self) -> None:
        with self._lock:
            self.policy.reset()

    # ------------------------------------------------------------------ real-time chunking
    def _rtc_refusal(self) -> str | None:
        """Why this policy cannot take RTC inputs, or None."""
        if not self.policy.supports_rtc() or self.action_mode != "continuous":
            return "RTC needs continuous (flow-matching) inference; LeRobot's MolmoAct2 refuses it in discrete mode"
        cfg = self.policy.config
        if cfg.joint_signs is not None or cfg.joint_offsets is not None:
            return ("RTC with joint_signs/joint_offsets is not supported here: the left-over would need the "
                    "inverse joint-frame transform before normalising")
        return None

    def _rtc_kwargs(self, rtc: RtcInputs) -> dict[str, Any]:
        """predict_action_chunk's RTC keywords, the left-over normalised as the policy's actions are
        (the inverse of its postprocessor's unnormaliser), and the policy's RTCConfig set to match."""
        import torch
        from lerobot.configs import RTCAttentionSchedule
        from lerobot.policies.rtc.configuration_rtc import RTCConfig
        from lerobot.processor import UnnormalizerProcessorStep

        why = self._rtc_refusal()
        if why:
            raise BackendError(why)
        cfg = self.policy.config
        want = RTCConfig(enabled=True, max_guidance_weight=float(rtc.max_guidance_weight),
                         execution_horizon=int(rtc.execution_horizon),
                         prefix_attention_schedule=RTCAttentionSchedule(rtc.prefix_attention_schedule))
        if cfg.rtc_config != want:
            cfg.rtc_config = want
            self.policy.init_rtc_processor()
        unnorm = next((st for st in self.post.steps if isinstance(st, UnnormalizerProcessorStep)), None)
        left = torch.as_tensor(np.asarray(rtc.prev_chunk_left_over, dtype=np.float32)).unsqueeze(0)
        if unnorm is not None:
            left = unnorm._normalize_action(left, inverse=False).clamp(-1.0, 1.0)
        return {"prev_chunk_left_over": left.to(self.device), "inference_delay": int(rtc.inference_delay),
                "execution_horizon": int(rtc.execution_horizon)}

    def predict(self, request: PolicyRequest) -> PolicyResult:
        import torch

        request.validate()
        if request.norm_tag and self.norm_tag and request.norm_tag != self.norm_tag:
            raise BackendError(f"this LeRobot policy was built for norm tag '{self.norm_tag}', not '{request.norm_tag}'")
        names = list(request.camera_names or self._camera_names)
        if len(names) != len(request.images):
            raise BackendError(f"{len(request.images)} images but {len(names)} camera names "
                               f"({', '.join(names) or 'none'}): images are matched to image keys by name")
        key_of = self._key_of_camera(names)
        with self._lock:
            t0 = time.perf_counter()
            batch: dict[str, Any] = {
                key_of[cam]: torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1).float().div_(255.0)
                for cam, im in zip(names, request.images)}
            batch["observation.state"] = torch.as_tensor(np.asarray(request.state, dtype=np.float32))
            batch["task"] = request.instruction
            try:
                inputs = self.pre(batch)
                t1 = time.perf_counter()
                kwargs: dict[str, Any] = {"inference_action_mode": self.action_mode}
                if request.seed is not None:
                    kwargs["generator"] = torch.Generator(device=self.device).manual_seed(int(request.seed))
                if request.num_steps or self.num_steps:
                    kwargs["num_steps"] = request.num_steps or self.num_steps
                rtc_cfg = self.policy.config.rtc_config
                if request.rtc is not None:
                    kwargs.update(self._rtc_kwargs(request.rtc))
                elif rtc_cfg is not None:
                    rtc_cfg.enabled = False  # no prefix (first chunk of an episode): LeRobot's plain path
                with torch.no_grad():
                    chunk = self.policy.predict_action_chunk(inputs, **kwargs)
                t2 = time.perf_counter()
                actions = self.post(chunk)
            except (RuntimeError, ValueError) as exc:
                raise BackendError(f"LeRobot MolmoAct2Policy failed: {exc}") from exc
            out = actions[0] if actions.ndim == 3 else actions
            result = PolicyResult(actions=out.detach().to("cpu", torch.float32).numpy().copy())
            result.timings = {"preprocess": t1 - t0, "model": t2 - t1, "postprocess": time.perf_counter() - t2}
        return result
