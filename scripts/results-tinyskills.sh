#!/usr/bin/env bash
# Runs CycleQD on every TinySkills expert set over several seeds and writes the tables of
# docs/results.md (mean ± sd over seeds of each model's test accuracy per skill and averaged).
#   scripts/results-tinyskills.sh [OUT_DIR] [SEEDS...]      defaults: runs/results, seeds 1 2 3
# (CYCLEQD_CLI picks another cycleqd binary than ./cycleqd.)
# Sets: instruct (the shipped demo, models/tinyskills), hard and mergeable (../shared/data/models/
# tinyskills; skipped with a notice when that folder is absent). Every run uses
# examples/tinyskills.yaml with only the seed and the model paths changed. A finished run is not
# redone (cycleqd resume of a complete run only prints its table, or redoes the final merge when
# its settings changed), so the script can be re-entered.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${1:-runs/results}"; shift || true
SEEDS=("$@"); [ ${#SEEDS[@]} -gt 0 ] || SEEDS=(1 2 3)
CLI="${CYCLEQD_CLI:-$ROOT/cycleqd}"
SHARED="$(cd "$ROOT/.." && pwd)/shared/data/models/tinyskills"
mkdir -p "$OUT"

# set name | base | expert folder prefix | task data folder
sets=("instruct|$ROOT/models/tinyskills/base|$ROOT/models/tinyskills/expert-|$ROOT/models/tinyskills")
if [ -d "$SHARED" ]; then
  sets+=("hard|$SHARED/base|$SHARED/expert-|$SHARED")
  sets+=("mergeable|$SHARED/base|$SHARED/mergeable/expert-|$SHARED")
else
  echo "note: $SHARED not found; only the shipped instruct set is run" >&2
fi

for entry in "${sets[@]}"; do
  IFS='|' read -r name base expert data <<<"$entry"
  for seed in "${SEEDS[@]}"; do
    yaml="$OUT/$name-seed$seed.yaml"
    run="$OUT/$name-seed$seed"
    python3 - "$ROOT/examples/tinyskills.yaml" "$yaml" "$name" "$seed" "$base" "$expert" "$data" <<'PY'
import os, re, sys
src, dst, name, seed, base, expert, data = sys.argv[1:]
text = open(src).read()
text = re.sub(r'(?m)^name: .*$', f'name: tinyskills-{name}-seed{seed}', text)
text = re.sub(r'(?m)^seed: .*$', f'seed: {seed}', text)
text = re.sub(r'(?m)^  base: .*$', f'  base: {base}', text)
for skill in ('code', 'db', 'os'):
    text = re.sub(rf'(?m)^    tinyskills/{skill}: .*$', f'    tinyskills/{skill}: {expert}{skill}', text)
text = re.sub(r'(?m)^  tinyskills: \S+', f'  tinyskills: {data}', text)
# The generic retention task ships only with the instruct set (models/tinyskills/tasks/generic).
if not os.path.isdir(os.path.join(data, 'tasks', 'generic')):
    text = re.sub(r'(?m)^  retention: .*\n', '', text)
# The multitask baseline is fine-tuned from the instruct base: a row of the instruct set only.
multitask = os.path.join(os.path.dirname(base), 'multitask')
if os.path.isdir(multitask):
    text = re.sub(r'(?m)^    multitask: \S+', f'    multitask: {multitask}', text)
else:
    text = re.sub(r'(?m)^  baselines:.*\n(    .*\n)*', '', text)
open(dst, 'w').write(text)
PY
    if [ -f "$run/run.json" ]; then
      # A finished run evaluates nothing here unless its final-stage settings changed.
      echo "== $name seed $seed: resuming $run"
      "$CLI" resume "$run"
    else
      echo "== $name seed $seed: $run"
      "$CLI" run "$yaml" --out "$run"
    fi
  done
done

python3 - "$OUT" <<'PY'
import json, os, statistics, sys
out = sys.argv[1]
runs = {}
for d in sorted(os.listdir(out)):
    p = os.path.join(out, d, 'report.json')
    if not os.path.isfile(p): continue
    name, seed = d.rsplit('-seed', 1)
    runs.setdefault(name, []).append((int(seed), json.load(open(p))))
def fmt(xs):
    xs = [100 * x for x in xs]
    if len(xs) == 1: return f'{xs[0]:.1f}'
    return f'{statistics.mean(xs):.1f} ± {statistics.stdev(xs):.1f}'
lines = []
for name in ('instruct', 'mergeable', 'hard'):
    if name not in runs: continue
    reps = sorted(runs[name])
    tasks = reps[0][1]['tasks']
    retention = [c['task'] for c in reps[0][1].get('retention', []) if not c['lower_is_better']]
    lines.append(f'### {name} set — seeds {", ".join(str(s) for s, _ in reps)} (test accuracy, %, mean ± sd over seeds)\n')
    lines.append('| model | ' + ' | '.join(t.split('/')[-1] for t in tasks) + ' | average | '
                 + ''.join(t.split('/')[-1] + ' (kept) | ' for t in retention) + 'valid average |')
    lines.append('|---|' + '---:|' * (len(tasks) + 2 + len(retention)))
    keys = [r['key'] for r in reps[0][1]['rows']]
    for key in keys:
        rows = [next((r for r in rep['rows'] if r['key'] == key), None) for _, rep in reps]
        rows = [r for r in rows if r is not None and r.get('test')]
        if not rows: continue
        label = rows[0]['label'] if len({r['label'] for r in rows}) == 1 else rows[0]['label'].split(' (')[0]
        cells = [fmt([r['test'][t] for r in rows]) for t in tasks]
        cells.append(fmt([r['test_average'] for r in rows]))
        # Retention: test accuracy on tasks the search never saw (not in the average).
        cells += [fmt([r['retention'][t] for r in rows]) if all((r.get('retention') or {}).get(t) is not None for r in rows) else '–' for t in retention]
        cells.append(fmt([r['search_average'] for r in rows]) if all('search_average' in r for r in rows) else '-')
        lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
    lines.append('')
table = '\n'.join(lines)
open(os.path.join(out, 'results.md'), 'w').write(table + '\n')
print(table)
PY
