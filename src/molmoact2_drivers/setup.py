from setuptools import find_packages, setup

package_name = "molmoact2_drivers"

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
    description="Arm drivers for MolmoAct2 deployments: chunk executor, safety layer, lifecycle driver node; YAM, SO-100/101, Franka, MuJoCo sim and ros2_control backends. No torch.",
    license="Apache-2.0",
    # Executables: one line per node, "name = package.nodes.module:main".
    entry_points={"console_scripts": [
        "driver_node = molmoact2_drivers.nodes.driver_node:main",
        "mujoco_sim_node = molmoact2_drivers.nodes.mujoco_sim_node:main",
        "scripted_expert_node = molmoact2_drivers.nodes.scripted_expert_node:main",
        "episode_supervisor_node = molmoact2_drivers.nodes.episode_supervisor_node:main",
        "leader_node = molmoact2_drivers.nodes.leader_node:main",
    ]},
)
