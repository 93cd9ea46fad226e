# molmoact2_ros: the two commands are `make run` (main job) and `make test` (all tests).
# Both set up everything they need on a fresh machine (Python 3.12 venv with ROS 2 from PyPI
# wheels + the model stack, colcon build) and are idempotent.

ROS_DISTRO ?= jazzy
SHELL := /bin/bash
ENV = source tools/env.sh $(ROS_DISTRO) &&
PYTEST_ARGS ?=
RUN_ARGS ?=

TRAIN_ARGS ?=

.PHONY: run train-demo test setup setup-kilted setup-drivers test-jazzy test-kilted test-drivers clean help

help:
	@echo "make run            main job (closed loop in simulation on the offline tiny checkpoint)"
	@echo "make train-demo     demonstrations -> LeRobot dataset -> lerobot-train fine-tune (models/so101_touch_cube's recipe)"
	@echo "make test           all tests on Jazzy, the ROS tests on Kilted, the drivers' tests in the torch-free venv"
	@echo "make setup          venv + colcon build for ROS_DISTRO (default jazzy)"
	@echo "make setup-drivers  drivers-only venv (no torch), for a robot PC using a remote GPU server"
	@echo "make clean          remove venvs, build, install and log"

setup:
	@bash tools/setup.sh $(ROS_DISTRO) full

setup-kilted:
	@bash tools/setup.sh kilted full

setup-drivers:
	@bash tools/setup.sh $(ROS_DISTRO) drivers

run: setup
	@$(ENV) python -m molmoact2_policy.main_job $(RUN_ARGS)

train-demo: setup
	@$(ENV) python -m molmoact2_policy.train_demo $(TRAIN_ARGS)

test-jazzy:
	@bash tools/setup.sh jazzy full
	@source tools/env.sh jazzy && python -m pytest $(PYTEST_ARGS)

# the ROS tests on the second distro; the competence pipeline (demos -> lerobot-train -> eval, ~3 min)
# proves LeRobot's side once, on Jazzy
test-kilted:
	@bash tools/setup.sh kilted full
	@source tools/env.sh kilted && python -m pytest -m ros \
		--deselect tests/test_sim_competence_pipeline.py::test_demos_export_finetune_and_closed_loop_eval_connect_and_read_back $(PYTEST_ARGS)

# the drivers-only robot PC: no torch, the drivers' and the emulators' tests
test-drivers:
	@bash tools/setup.sh jazzy drivers
	@source tools/env.sh jazzy drivers && python -m pytest -m "not model" src/molmoact2_drivers \
		tests/test_drivers_are_torch_free.py tests/test_venv_needs_no_system_ffmpeg.py \
		tests/test_emulator_fidelity_feetech.py tests/test_emulator_fidelity_damiao.py $(PYTEST_ARGS)

test: test-jazzy test-kilted test-drivers

clean:
	rm -rf .venv-* build install log
