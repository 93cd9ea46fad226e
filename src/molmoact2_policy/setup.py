from setuptools import find_packages, setup

package_name = "molmoact2_policy"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="molmoact2_ros maintainers",
    maintainer_email="robotics@molmoact2-ros.invalid",
    description="MolmoAct2 policy side: camera ingestion, depth-change masking, VLA inference (real MolmoAct2 code), depth-token visualisation, recording and replay evaluation.",
    license="Apache-2.0",
    # Executables: one line per node, "name = package.nodes.module:main".
    entry_points={"console_scripts": [
        "molmoact2-build-tiny-checkpoint = molmoact2_policy.core.tiny_checkpoint:main",
        "policy_node = molmoact2_policy.nodes.policy_node:main",
        "molmoact2-act-server = molmoact2_policy.server.app:main",
        "camera_node = molmoact2_policy.nodes.camera_node:main",
        "masking_node = molmoact2_policy.nodes.masking_node:main",
        "perception_node = molmoact2_policy.nodes.perception_node:main",
        "depth_viz_node = molmoact2_policy.nodes.depth_viz_node:main",
        "recorder_node = molmoact2_policy.nodes.recorder_node:main",
        "replay_node = molmoact2_policy.nodes.replay_node:main",
        "molmoact2-record = molmoact2_policy.nodes.recorder_node:cli",
        "molmoact2-replay = molmoact2_policy.nodes.replay_node:cli",
        "molmoact2-evaluate = molmoact2_policy.core.evaluation.cli:evaluate_main",
        "molmoact2-export-lerobot = molmoact2_policy.core.evaluation.cli:export_main",
        "molmoact2-sim = molmoact2_policy.main_job:main",
        "episode_manager_node = molmoact2_policy.nodes.episode_manager_node:main",
        "molmoact2-episodes = molmoact2_policy.episodes_tui:main",
        "molmoact2-demos = molmoact2_policy.demos:main",
        "molmoact2-train-demo = molmoact2_policy.train_demo:main",
        "molmoact2-sim-eval = molmoact2_policy.sim_eval:main",
    ]},
)
