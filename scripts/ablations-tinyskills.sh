#!/usr/bin/env bash
# The paper's ablations at toy scale, on the shipped TinySkills instruct set (models/tinyskills):
# examples/tinyskills.yaml with one setting changed per variant, over several seeds, then one table
# (test split, mean ± sd over seeds) in OUT/ablations.md:
#   full          the example as it ships (elite sampling, SVD mutation in the child basis)
#   random        sampling.kind random instead of elite sampling
#   gaussian      mutation.kind gaussian (sigma 0.001, about the RMS change the SVD mutation makes) instead of SVD
#   no-mutation   mutation.kind none (crossover only)
#   expert-basis  mutation.basis expert (the reference's SVD mutation) instead of the child basis
#   no-cycle      archive.cycle false: the paper's "without the cycle" ablation, one archive whose
#                 quality is the mean of the tasks' scores and whose behaviour axes are all the tasks
# Each row gives the final model of the weight search and of the paper's softmax merge, the best
# elite per task, and how many of the 3 archives end with a best elite that beats its expert on
# the expert's own skill (test); without the cycle there is one archive, and the count is of the
# tasks whose best elite in it beats the task's expert.
#   scripts/ablations-tinyskills.sh [OUT_DIR] [SEEDS...]      defaults: runs/ablations, seeds 1 2 3
# A finished run is not redone (resume of a complete run only prints its table), so the script can be re-entered.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${1:-runs/ablations}"; shift || true
SEEDS=("$@"); [ ${#SEEDS[@]} -gt 0 ] || SEEDS=(1 2 3)
CLI="${CYCLEQD_CLI:-$ROOT/cycleqd}"
mkdir -p "$OUT"
for variant in full random gaussian no-mutation expert-basis no-cycle; do
  for seed in "${SEEDS[@]}"; do
    yaml="$OUT/$variant-seed$seed.yaml"
    run="$OUT/$variant-seed$seed"
    python3 - "$ROOT/examples/tinyskills.yaml" "$yaml" "$variant" "$seed" <<'PY'
import re, sys
src, dst, variant, seed = sys.argv[1:]
text = open(src).read()
text = re.sub(r'(?m)^name: .*$', f'name: ablation-{variant}-seed{seed}', text)
text = re.sub(r'(?m)^seed: .*$', f'seed: {seed}', text)
if variant == 'random':
    text = re.sub(r'(?m)^  kind: elite$', '  kind: random', text)
elif variant == 'gaussian':
    text = re.sub(r'(?m)^  kind: svd$', '  kind: gaussian\n  sigma: 0.001', text)
elif variant == 'no-mutation':
    text = re.sub(r'(?m)^  kind: svd$', '  kind: none', text)
elif variant == 'expert-basis':
    text = re.sub(r'(?m)^  basis: child\b', '  basis: expert', text)
elif variant == 'no-cycle':
    text = re.sub(r'(?m)^archive:$', 'archive:\n  cycle: false', text)
if variant != 'full' and text == re.sub(r'(?m)^name: .*$', f'name: ablation-{variant}-seed{seed}', re.sub(r'(?m)^seed: .*$', f'seed: {seed}', open(src).read())):
    sys.exit(f'{variant}: the example no longer has the line this variant changes')
# Relative model paths stay as in the example; the run resolves them against examples/ (--base-dir).
open(dst, 'w').write(text)
PY
    if [ -f "$run/report.json" ] && python3 -c "import json,sys; sys.exit(0 if json.load(open('$run/report.json')).get('complete') else 1)"; then
      echo "== $variant seed $seed: done ($run)"
    elif [ -f "$run/run.json" ]; then
      echo "== $variant seed $seed: resuming $run"; "$CLI" resume "$run" -q >/dev/null
    else
      echo "== $variant seed $seed: $run"; "$CLI" run "$yaml" --out "$run" --base-dir "$ROOT/examples" -q >/dev/null
    fi
  done
done

python3 - "$OUT" "${SEEDS[@]}" <<'PY'
import json, os, statistics, sys
out, seeds = sys.argv[1], sys.argv[2:]
def fmt(xs):
    xs = [100 * x for x in xs]
    return f'{xs[0]:.1f}' if len(xs) == 1 else f'{statistics.mean(xs):.1f} ± {statistics.stdev(xs):.1f}'
names = {'full': 'CycleQD as shipped (elite sampling, SVD mutation, child basis)', 'random': 'random instead of elite sampling',
         'gaussian': 'Gaussian (σ 0.001) instead of SVD mutation', 'no-mutation': 'no mutation (crossover only)',
         'expert-basis': 'SVD mutation in the expert basis (the reference\'s)',
         'no-cycle': 'without the cycle (one archive, quality = mean of the tasks)'}
lines = [f'| variant | final (search) | final (softmax) | best elite per task | tasks whose best elite beats its expert (per seed) |',
         '|---|---:|---:|---:|---|']
for v, label in names.items():
    reps = [json.load(open(os.path.join(out, f'{v}-seed{s}', 'report.json'))) for s in seeds]
    row = lambda rep, key: next(r for r in rep['rows'] if r['key'] == key)
    beats = []
    for rep in reps:
        n = 0
        for t in rep['tasks']:
            if row(rep, f'elite:{t}')['test'][t] > row(rep, f'expert:{t}')['test'][t]: n += 1
        beats.append(n)
    lines.append(f'| {label} | ' + ' | '.join(fmt([row(r, k)['test_average'] for r in reps]) for k in ('final', 'final_softmax', 'best_elite_per_task'))
                 + f' | {", ".join(map(str, beats))} of 3 |')
table = '\n'.join(lines)
open(os.path.join(out, 'ablations.md'), 'w').write(table + '\n')
print(table)
PY
