#!/bin/sh
# Mutation testing of the pure core (issue 12 item 21), one module group at a time, with mutmut.
#
#   bench/mutation.sh [interp|compile|policy|semantics|lift|lift.MODULE ...]   (default: the first five)
#   (lift.MODULE, e.g. lift.engine: one module of core/lift at a time, against the lift tests)
#   MUTATION_SAMPLE=K bench/mutation.sh ...    run only every K-th mutant (sorted by name)
#   MUTATION_EXAMPLES=N                         hypothesis examples per property test (default 10)
#   MUTATION_TESTS="tests/core/x.py ..."        replace the group's test files (a narrower run)
#   MUTATION_MUTANTS=FILE                       run only the mutants named in FILE (one a line), e.g.
#                                               the survivors of an earlier pass
#   MUTATION_SKIP="name or name ..."            lift: also deselect these tests (-k), e.g. the slow
#                                               property tests, for a first pass; survivors of it are
#                                               then re-run with MUTATION_SKIP unset (bench/mutation-lift.md)
#
# Why this shape: mutmut copies the tree to mutants/, so each group runs in its own scratch copy
# under ${MUTATION_DIR:-/tmp/cgdev-mutation} (the worktree is never modified).  Each mutant runs
# only the fast unit tests that exercise its module (no kernel, no lab), with hypothesis's "ci"
# profile (derandomized, no database) and a small max_examples, so a run is reproducible and fits
# on a shared 2-core machine.  mutmut's own per-function test selection narrows it further.
# Prints, per group, the counts mutmut reports (killed / survived / timeout / ...), and leaves
# the survivors' diffs in $MUTATION_DIR/<group>/survivors.txt.  Needs mutmut (>= 3.3) in the venv.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/../../main/.venv/bin/python}
[ -x "$PY" ] || PY=/work/main/.venv/bin/python
MUTMUT=$(dirname "$PY")/mutmut
OUT=${MUTATION_DIR:-/tmp/cgdev-mutation}
CHILDREN=${MUTATION_CHILDREN:-2}
SAMPLE=${MUTATION_SAMPLE:-1}
GROUPS_=${*:-interp compile policy semantics lift}

files_for() {
    case $1 in
        interp) echo "src/cgdev/core/interp.py" ;;
        compile) echo "src/cgdev/core/compile.py" ;;
        policy) echo "src/cgdev/core/policy.py" ;;
        semantics) echo "src/cgdev/core/semantics/*" ;;
        lift) echo "src/cgdev/core/lift/*" ;;
        lift.*) echo "src/cgdev/core/lift/${1#lift.}.py" ;;
    esac
}
# Extra pytest arguments per group: the 10,000-rule tests take seconds each and would dominate.
args_for() {
    case $1 in
        compile) printf '%s\n' -k "not ten_thousand_rules" ;;
        lift | lift.*) printf '%s\n' -k "not 10000_rules${MUTATION_SKIP:+ and not ($MUTATION_SKIP)}" ;;
    esac
}
tests_for() {
    if [ -n "${MUTATION_TESTS:-}" ]; then echo "$MUTATION_TESTS"; return; fi
    case $1 in
        interp) echo "tests/core/test_interp.py tests/core/test_fuzz_program.py" ;;
        compile) echo "tests/core/test_compile.py" ;;
        policy) echo "tests/core/test_policy.py tests/core/test_semantics.py" ;;
        semantics) echo "tests/core/test_semantics.py tests/core/test_shapes.py" ;;
        lift | lift.*) (cd "$ROOT" && ls tests/core/test_lift.py tests/core/test_lift_*.py 2>/dev/null) ;;
    esac
}
# The captured runtime programs (generator names, real chains) when they are on this machine.
[ -n "${CGDEV_EVIDENCE:-}" ] || [ ! -d "$ROOT/../../shared/reference/realstack/evidence" ] \
    || export CGDEV_EVIDENCE="$(cd "$ROOT/../../shared/reference/realstack/evidence" && pwd)"
[ -n "${CGDEV_EVIDENCE:-}" ] || [ ! -d /work/shared/reference/realstack/evidence ] \
    || export CGDEV_EVIDENCE=/work/shared/reference/realstack/evidence

for group in $GROUPS_; do
    dir=$OUT/$group
    rm -rf "$dir"
    mkdir -p "$dir"
    (cd "$ROOT" && tar cf - src tests pyproject.toml) | (cd "$dir" && tar xf -)
    {
        echo "[mutmut]"
        echo "source_paths = src"
        echo "only_mutate = $(files_for "$group")"
        echo "pytest_add_cli_args_test_selection ="
        for t in $(tests_for "$group"); do echo "    $t"; done
        echo "pytest_add_cli_args ="
        echo "    -x"
        echo "    -q"
        echo "    -p"
        echo "    no:cacheprovider"
        echo "    --hypothesis-profile=mutation"
        args_for "$group" | sed 's/^/    /'
    } > "$dir/setup.cfg"
    # Property tests with their own max_examples would ignore the profile: cap them in the copy.
    sed -i -E "s/max_examples=[0-9]+/max_examples=${MUTATION_EXAMPLES:-10}/g" "$dir"/tests/core/test_*.py
    # A small, derandomized hypothesis profile for mutation runs (registered next to "ci").
    cat >> "$dir/tests/conftest.py" <<'PYEOF'

settings.register_profile("mutation", derandomize=True, database=None, max_examples=10, deadline=None)
PYEOF
    echo "== $group: $(files_for "$group") against $(tests_for "$group")"
    if [ "$SAMPLE" = 1 ] && [ -z "${MUTATION_MUTANTS:-}" ]; then
        (cd "$dir" && env -u PYTHONPATH PYTHONDONTWRITEBYTECODE=1 CI=1 "$MUTMUT" run --max-children "$CHILDREN" >run.log 2>&1) || true
    else
        # generate the mutants (and mutmut's test statistics) without running any, then a sample
        (cd "$dir" && env -u PYTHONPATH PYTHONDONTWRITEBYTECODE=1 CI=1 "$MUTMUT" run "no-such-mutant" >gen.log 2>&1) || true
        (cd "$dir" && env -u PYTHONPATH "$MUTMUT" results --all true 2>/dev/null) \
            | sed -n 's/^ *\([^ :]*\): .*/\1/p' | sort | awk -v k="$SAMPLE" 'NR % k == 1 || k == 1' > "$dir/sample.txt"
        [ -z "${MUTATION_MUTANTS:-}" ] || grep -v '^ *$' "$MUTATION_MUTANTS" > "$dir/sample.txt"
        echo "   sample: every ${SAMPLE}th mutant, $(wc -l < "$dir/sample.txt") of $(cd "$dir" && env -u PYTHONPATH "$MUTMUT" results --all true 2>/dev/null | grep -c ': ')"
        # shellcheck disable=SC2046
        (cd "$dir" && env -u PYTHONPATH PYTHONDONTWRITEBYTECODE=1 CI=1 "$MUTMUT" run --max-children "$CHILDREN" $(cat sample.txt) >run.log 2>&1) || true
    fi
    (cd "$dir" && env -u PYTHONPATH "$MUTMUT" results --all true >results.txt 2>&1) || true
    tail -n 3 "$dir/run.log" | tr '\r' '\n' | tail -n 2
    for status in killed survived "timed out" suspicious skipped "not checked" "no tests" segfault; do
        n=$(grep -c ": $status\$" "$dir/results.txt" || true)
        [ "$n" = 0 ] || echo "   $status: $n"
    done
    case $group in
        lift | lift.*)  # per module of the package: "count module status"
            sed -n 's/^ *cgdev\.core\.lift\.\([a-z_]*\)\..*: \(.*\)$/\1: \2/p' "$dir/results.txt" \
                | grep -v ": not checked$" | sort | uniq -c | sed 's/^/  /' ;;
    esac
    grep ": survived\$" "$dir/results.txt" | sed 's/: survived$//; s/^ *//' | while read -r m; do
        echo "--- $m"
        (cd "$dir" && env -u PYTHONPATH "$MUTMUT" show "$m" 2>/dev/null) || true
    done > "$dir/survivors.txt"
done
