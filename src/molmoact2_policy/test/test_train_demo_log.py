"""molmoact2-train-demo reads lerobot-train's log: LeRobot prints the step rounded (1K for
1000..1499), so the loss curve takes the k-th line's step as k * log_freq and checks the shown one."""

from __future__ import annotations

import sys

import pytest

from molmoact2_policy.train_demo import run_training


def _fake_trainer(shown_steps: list[str]) -> list[str]:
    lines = [f"INFO ot_train.py:641 step:{s} smpl:0 ep:0 epch:0.1 loss:{1.0 / (i + 1):.3f} grdn:1.0" for i, s in enumerate(shown_steps)]
    return [sys.executable, "-c", "import sys; sys.stdout.write(" + repr("\n".join(lines) + "\n") + ")"]


def test_loss_curve_steps_past_one_thousand_are_not_collapsed_onto_1k(tmp_path):
    shown = ["500", "1K", "2K", "2K", "2K", "3K"]  # steps 500 .. 3000 every 500, as LeRobot prints them
    losses = run_training(_fake_trainer(shown), 3000, tmp_path / "train.log", {}, log_freq=500)
    assert [s for s, _ in losses] == [500, 1000, 1500, 2000, 2500, 3000]
    assert losses[-1][1] == pytest.approx(1 / 6, abs=1e-3)
    assert (tmp_path / "train.log").read_text().count("loss:") == 6


def test_a_log_whose_steps_disagree_with_the_log_frequency_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="says step 5K where 100 was due"):
        run_training(_fake_trainer(["5K"]), 100, tmp_path / "train.log", {}, log_freq=100)
