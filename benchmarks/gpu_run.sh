#!/usr/bin/env bash
# Every GPU measurement in one go, on a fresh GPU machine that has torch but not this package:
#   bash benchmarks/gpu_run.sh OUT [--cpu-smoke] [--budget SECONDS]
# Installs the project without dependencies (plus any missing pure-Python ones from a folder of
# wheels named by DIGA_WHEELS, e.g. made with `pip download pytest pyyaml -d wheels`), then runs
# benchmarks/gpu_run.py, which writes OUT/gpu_run.json and OUT/gpu_run.log.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: benchmarks/gpu_run.sh OUT [--cpu-smoke] [--budget SECONDS]}
shift
mkdir -p "$out"
if ! python -c "import diga, pathlib, sys; sys.exit(pathlib.Path(diga.__file__).resolve().parents[1] != pathlib.Path.cwd().resolve())" 2>/dev/null; then
    pip install -q --no-deps --no-build-isolation -e . >>"$out/gpu_run.log" 2>&1 \
        || pip install -q --no-deps -e . >>"$out/gpu_run.log" 2>&1
fi
if [[ -n "${DIGA_WHEELS:-}" && -d "$DIGA_WHEELS" ]]; then
    for module_package in pytest:pytest yaml:pyyaml; do
        module=${module_package%%:*}; package=${module_package##*:}
        python -c "import $module" 2>/dev/null \
            || pip install -q --no-index --find-links "$DIGA_WHEELS" "$package" >>"$out/gpu_run.log" 2>&1 || true
    done
fi
exec python benchmarks/gpu_run.py --out "$out" "$@"
