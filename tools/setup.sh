#!/usr/bin/env bash
# One-command set-up: a Python 3.12 venv holding real ROS 2 from PyPI wheels (+ the model stack),
# then a colcon build of the workspace. Idempotent: a second run only re-checks and rebuilds.
#
#   tools/setup.sh [jazzy|kilted] [full|drivers]
#
# full    : ROS + model stack (torch, lerobot) + drivers   -> .venv-<distro>
# drivers : ROS + drivers only, no torch (robot PC that uses a remote GPU server)
#                                                          -> .venv-<distro>-drivers
set -euo pipefail

distro="${1:-jazzy}"
profile="${2:-full}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

case "$distro" in jazzy|kilted) ;; *) echo "setup: unknown ROS distro '$distro' (jazzy or kilted)" >&2; exit 2 ;; esac
case "$profile" in
  full) venv="$root/.venv-$distro"; reqs=(base drivers model "ros-$distro") ;;
  drivers) venv="$root/.venv-$distro-drivers"; reqs=(base drivers "ros-$distro") ;;
  *) echo "setup: unknown profile '$profile' (full or drivers)" >&2; exit 2 ;;
esac

find_python312() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  if command -v python3.12 >/dev/null 2>&1 && python3.12 -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
    command -v python3.12; return
  fi
  # pyenv machines: the shim needs the version selected.
  if command -v pyenv >/dev/null 2>&1; then
    for v in $(pyenv versions --bare | grep -E '^3\.12(\.|$)' | sort -V -r); do
      p="$(pyenv root)/versions/$v/bin/python3.12"
      [ -x "$p" ] && { echo "$p"; return; }
    done
  fi
  echo "setup: Python 3.12 not found (Ubuntu 24.04: apt install python3.12-venv; pyenv: pyenv install 3.12)" >&2
  exit 1
}

req_files=()
for r in "${reqs[@]}"; do req_files+=("$root/requirements/$r.txt"); done
fingerprint="$(cat "${req_files[@]}" "$root/tools/setup.sh" "$root/tools/fix_ros_wheel_cmake.py" | sha256sum | cut -c1-16)"
stamp="$venv/.molmoact2-setup-$fingerprint"
# what a full venv of either distro shares (all but the ROS wheels)
shared_fingerprint="$(cat "$root/requirements/base.txt" "$root/requirements/drivers.txt" "$root/requirements/model.txt" \
  | sha256sum | cut -c1-16)"

if [ ! -f "$stamp" ]; then
  py="$(find_python312)"
  echo "setup: creating $venv with $py ($distro, $profile)"
  if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv"
    # The other distro's full venv, set up from the same non-ROS requirements, lends its model
    # stack as hard links (tools/seed_venv.py): one copy of torch on disk, not two.
    if [ "$profile" = full ]; then
      for other in jazzy kilted; do
        donor="$root/.venv-$other"
        if [ "$other" != "$distro" ] && [ -f "$donor/.molmoact2-shared-$shared_fingerprint" ]; then
          "$venv/bin/python" "$root/tools/seed_venv.py" "$donor" "$venv"
          break
        fi
      done
    fi
  fi
  pip_args=()
  for f in "${req_files[@]}"; do pip_args+=(-r "$f"); done
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pip_args[@]}" 2>&1 \
    | grep -v -E "^WARNING: Location 'file://.* is ignored" || true
  # Videos are encoded and decoded with PyAV, whose wheel bundles its own FFmpeg: no system
  # libav* is needed. torchcodec (which loads the system's libav*) is not in the requirements;
  # a venv made when it was loses it, so LeRobot's default backend cannot pick a broken decoder.
  if [ -d "$venv/lib/python3.12/site-packages/torchcodec" ]; then
    "$venv/bin/python" -m pip uninstall --quiet --yes --disable-pip-version-check torchcodec
  fi
  "$venv/bin/python" -m pip check >/dev/null || { "$venv/bin/python" -m pip check; exit 1; }
  "$venv/bin/python" "$root/tools/fix_ros_wheel_cmake.py"
  rm -f "$venv"/.molmoact2-setup-* "$venv"/.molmoact2-shared-*
  touch "$stamp"
  [ "$profile" = full ] && touch "$venv/.molmoact2-shared-$shared_fingerprint"
else
  echo "setup: $venv is up to date"
fi

# Build the workspace with colcon (interfaces via rosidl; the Python packages via ament_python).
source "$root/tools/env.sh" "$distro" "$profile" --no-install-check
packages=(molmoact2_msgs molmoact2_common molmoact2_drivers)
[ "$profile" = full ] && packages+=(molmoact2_policy)
cd "$root"
mkdir -p "$root/log"
# Each venv gets its own build and install trees: the generated message extensions are compiled
# against that venv's Python and NumPy.
tree="$distro"; [ "$profile" = drivers ] && tree="$distro-drivers"
colcon --log-base "$root/log/$tree" build \
  --build-base "$root/build/$tree" --install-base "$root/install/$tree" \
  --base-paths "$root/src" --packages-select "${packages[@]}" \
  --metas "$root/colcon.meta" \
  --cmake-args "-DPython3_EXECUTABLE=$venv/bin/python" \
  --event-handlers console_cohesion- summary- status- console_stderr- \
  > "$root/log/colcon-$tree.out" 2>&1 || { cat "$root/log/colcon-$tree.out"; echo "setup: colcon build failed" >&2; exit 1; }
echo "setup: workspace built into install/$tree (${packages[*]})"
