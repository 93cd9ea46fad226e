# Source me: the environment for one distro's venv and colcon install, without the ROS wheels'
# per-process re-exec (LD_LIBRARY_PATH is computed once here).
#   source tools/env.sh [jazzy|kilted] [full|drivers]
_m2_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_m2_distro="${1:-${MOLMOACT2_ROS_DISTRO:-jazzy}}"
_m2_profile="${2:-${MOLMOACT2_PROFILE:-full}}"
if [ "$_m2_profile" = drivers ]; then _m2_tree="$_m2_distro-drivers"; else _m2_tree="$_m2_distro"; fi
_m2_venv="$_m2_root/.venv-$_m2_tree"
if [ "${3:-}" != --no-install-check ] && [ ! -d "$_m2_root/install/$_m2_tree/molmoact2_msgs" ]; then
  echo "env.sh: workspace for $_m2_distro not built: run 'make setup ROS_DISTRO=$_m2_distro'" >&2
  return 1 2>/dev/null || exit 1
fi
export VIRTUAL_ENV="$_m2_venv"
export PATH="$_m2_venv/bin:$PATH"
export MOLMOACT2_ROS_DISTRO="$_m2_distro"
export ROS_DISTRO="$_m2_distro"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
_m2_site="$_m2_venv/lib/python3.12/site-packages"
_m2_install="$_m2_root/install/$_m2_tree"
_m2_ld="$_m2_venv/lib:$_m2_install/molmoact2_msgs/lib"
for _d in "$_m2_site"/ros_*.libs; do [ -d "$_d" ] && _m2_ld="$_m2_ld:$_d"; done
export LD_LIBRARY_PATH="$_m2_ld${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
_m2_ament="$_m2_venv"
for _p in "$_m2_install"/*/; do [ -d "$_p/share" ] && _m2_ament="${_p%/}:$_m2_ament"; done
export AMENT_PREFIX_PATH="$_m2_ament"
export CMAKE_PREFIX_PATH="$_m2_ament"
# Our Python packages come from src/ (edits take effect without a rebuild); the generated
# message package from the colcon install.
_m2_py="$_m2_install/molmoact2_msgs/lib/python3.12/site-packages"
for _p in molmoact2_common molmoact2_policy molmoact2_drivers; do _m2_py="$_m2_py:$_m2_root/src/$_p"; done
# ...and their installed metadata after them: colcon's console scripts (what ros2 run and the
# runner start) find their entry points through it.
for _p in molmoact2_common molmoact2_policy molmoact2_drivers; do _m2_py="$_m2_py:$_m2_install/$_p/lib/python3.12/site-packages"; done
export PYTHONPATH="$_m2_py${PYTHONPATH:+:$PYTHONPATH}"
# The packages' executables (molmoact2-run, molmoact2-sim, molmoact2-evaluate, the nodes) on PATH,
# as `ros2 run` would find them.
for _p in molmoact2_common molmoact2_policy molmoact2_drivers; do
  [ -d "$_m2_install/$_p/lib/$_p" ] && PATH="$_m2_install/$_p/lib/$_p:$PATH"
done
export PATH
# One machine: Fast DDS with a large shared-memory segment (camera frames do not fit the default
# 512 KiB one) and UDP on loopback only. Robots spanning several hosts override this.
export FASTRTPS_DEFAULT_PROFILES_FILE="${FASTRTPS_DEFAULT_PROFILES_FILE:-$_m2_root/config/dds/fastdds_localhost_shm.xml}"
export FASTDDS_DEFAULT_PROFILES_FILE="$FASTRTPS_DEFAULT_PROFILES_FILE"
export MOLMOACT2_ROS_ROOT="$_m2_root"
unset _m2_tree _m2_root _m2_distro _m2_profile _m2_venv _m2_site _m2_install _m2_ld _m2_ament _m2_py _p _d
