#!/usr/bin/env bash
# The CarRacing v2 search's generations on a lent many-core machine (the device tool), from the state this
# machine's search reached. Generations are bound by the game's rendering on the CPU, so a 16-core machine
# plays one in about an eighth of the time of 2 cores; the GPU is not used.
#
# Here, once per session (the device machine has no gymnasium, Box2D, pygame-ce or cma, and no registry):
#   echo /.devrun/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl Box2D==2.3.10 pygame-ce==2.5.8 gymnasium==1.4.0 cma==4.5.0 farama-notifications==0.0.6
# Stop the search here, then hand its state over:
#   rm -rf .devrun && mkdir -p .devrun && cp -r runs/car-v2/wm/cmaes .devrun/
# On the device (run tool, carry [".whl", ".devrun"], timeout_s 600):
#   bash scripts/carracing_v2_device.sh 540 16
# Back here, with the files it returned: replace the state and C, and restart the search, which replays
# the device's generations (sep-CMA-ES replays on any machine, wmlib.cmaes):
#   tar xzf FILES_AT/cmaes.tgz -C runs/car-v2/wm
#
# usage: scripts/carracing_v2_device.sh SECONDS WORKERS   (the generations end, killed, after SECONDS; the
# generation in flight is lost and the saved state is whole, as after any kill)
set -u
T=${1:-540}; W=${2:-16}
OUT=${OUT:-/tmp/carracing-v2-device}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 SDL_VIDEODRIVER=dummy
if [ -d .whl ] && python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
RUN=/tmp/carracing-v2-device-run; rm -rf $RUN
{ echo "cores: $(getconf _NPROCESSORS_ONLN)"; lscpu | grep -m1 "Model name"; nvidia-smi -L 2>/dev/null; } | tee $OUT/machine.txt
python3 - <<'PY' || exit 4
from pathlib import Path
import torch, numpy, cma, gymnasium, Box2D, pygame
print("torch", torch.__version__, "numpy", numpy.__version__, "cma", cma.__version__, "gymnasium", gymnasium.__version__)
from wmlib.run import recipes
assert recipes.carracing_v2_restore(Path("pretrained/carracing/v2-progress"), Path("/tmp/carracing-v2-device-run"))
PY
[ -f .devrun/cmaes/state.npz ] || { echo "no .devrun/cmaes/state.npz: copy the search's cmaes folder there" >&2; exit 5; }
cp .devrun/cmaes/* $RUN/wm/cmaes/ || exit 5
echo "generations before: $(wc -l < $RUN/wm/cmaes/log.jsonl)"
start=$(date +%s)
timeout -s KILL $T python3 scripts/carracing_v2.py --run-dir $RUN --stages c --workers $W > $OUT/run.log 2>&1
tail -n 40 $OUT/run.log
echo "ran $(( $(date +%s) - start )) s; generations after: $(wc -l < $RUN/wm/cmaes/log.jsonl)"
tar czf $OUT/cmaes.tgz -C $RUN/wm cmaes $(cd $RUN/wm && ls controller.safetensors controller.json 2>/dev/null)
ls -la $OUT
