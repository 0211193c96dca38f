#!/usr/bin/env bash
# Install jaxpotts with exactly the floor versions of its dependencies (scripts/min-versions.txt,
# the lower bounds declared in pyproject.toml) into a fresh virtual environment in a temporary
# directory, and run a smoke test on them: the fit engine, sharding, sampling, the optimisers and
# the command line (a few minutes on two CPU cores, most of it the install). Run it whenever a lower bound or a use of a newer jax/optax/equinox API changes.
#
#   scripts/check_min_versions.sh                  # the smoke test below
#   scripts/check_min_versions.sh tests/test_x.py  # other pytest arguments instead
#
# Environment: PYTHON (interpreter for the venv, default python3), MIN_VERSIONS (another
# constraints file, e.g. to show that a version below the floor fails), KEEP_VENV=1 (keep the
# temporary directory and print its path).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
constraints="${MIN_VERSIONS:-$repo/scripts/min-versions.txt}"
python="${PYTHON:-python3}"
[ -f "$constraints" ] || { echo "constraints file not found: $constraints" >&2; exit 2; }

tmp="$(mktemp -d "${TMPDIR:-/tmp}/jaxpotts-min.XXXXXX")"
if [ "${KEEP_VENV:-0}" = 1 ]; then
  echo "keeping $tmp"
else
  trap 'rm -rf "$tmp"' EXIT
fi

"$python" -m venv "$tmp/venv"
pip=("$tmp/venv/bin/python" -m pip)
"${pip[@]}" install --quiet --upgrade pip
# Every package named in the constraints file is pinned to exactly that version, so a
# conflict between the floors (or with pyproject.toml's lower bounds) fails the install here.
"${pip[@]}" install --quiet -c "$constraints" -e "$repo" pytest hypothesis scipy

# The installed versions must be the pinned ones (a constraint only bites on packages pip installs).
"$tmp/venv/bin/python" - "$constraints" <<'PY'
import re, sys
from importlib.metadata import version
bad = []
for line in open(sys.argv[1]):
    m = re.match(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s#;]+)", line)
    if m:
        name, want = m.groups()
        have = version(name)
        print(f"{name}=={have}")
        if have != want:
            bad.append(f"{name}: installed {have}, pinned {want}")
if bad:
    sys.exit("not the floor versions: " + "; ".join(bad))
PY

cd "$repo"
if [ "$#" -eq 0 ]; then
  # engine and optimisers, sharding (jax.shard_map), sampling (make_mesh with axis types, chains
  # over CPU devices), and the command line in subprocesses (plmDCA fit, replica with optax.lbfgs)
  set -- tests/test_engine.py tests/test_optim.py tests/test_sharding.py tests/test_sampling.py \
    tests/test_cli.py::test_info_entry_point_prints_json \
    tests/test_cli.py::test_user_mistakes_give_one_line_and_exit_2 \
    tests/test_cli.py::test_import_jaxpotts_exposes_the_subpackages \
    tests/test_cli.py::test_fit_plm_on_an_alignment_with_sequence_weights \
    tests/test_cli.py::test_replica_curve_with_simulation_points
fi
# -p no:cacheprovider: leave no .pytest_cache behind; the venv's python, so the pins are what runs
status=0
"$tmp/venv/bin/python" -m pytest -q -p no:cacheprovider "$@" || status=$?
exit "$status"
