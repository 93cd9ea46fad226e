from setuptools import find_packages, setup

package_name = "molmoact2_common"

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
    description="Shared pieces of the MolmoAct2 ROS 2 stack.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "lifecycle_manager = molmoact2_common.bringup.manager_node:main",
            "molmoact2-run = molmoact2_common.bringup.runner:main",
        ]
    },
)
