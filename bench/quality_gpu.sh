#!/usr/bin/env bash
# Trains and scores every model variant x bits x protocol with bench/quality.py as parallel jobs
# (headline variant first; DEVICE=cuda by default) and merges their rows into $OUT/rows.json.
# Usage: OUT=/tmp/q CORPUS=path/to/20news-bydate.tar.xz bash bench/quality_gpu.sh
# then:  python bench/quality.py --rows-from docs/results/quality-baselines.json /tmp/q/rows.json
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2
C=${CORPUS:-../shared/data/20news-bydate.tar.xz}
mkdir -p /tmp/rows /tmp/logs /tmp/pages
nvidia-smi -L 2>&1; python3 -c "import torch,numpy,scipy,sklearn;print(torch.__version__, torch.cuda.is_available(), numpy.__version__, scipy.__version__, sklearn.__version__)"
jobs=()
for v in ${VARIANTS:-variational denoising undercomplete sparse contractive}; do
  for b in ${BITS:-16 32 64 128}; do
    for p in ${PROTOCOLS:-clean raw}; do jobs+=("$p $b $v"); done
  done
done
printf '%s\n' "${jobs[@]}" | nl -w1 -s' ' | timeout ${TOTAL_TIMEOUT:-530} xargs -P ${PAR:-14} -L1 bash -c '
  n=$0; p=$1; b=$2; v=$3; s=$SECONDS
  python3 bench/quality.py --corpus '"$C"' --protocols $p --bits $b --methods model --variants $v \
    --device ${DEVICE:-cuda} ${EXTRA:-} --out /tmp/pages/$n/quality.md --json /tmp/rows/$n.json > /tmp/logs/$n.log 2>&1
  echo "job $n ($p $b $v) rc=$? $((SECONDS-s))s"'
python3 - <<'PY'
import json, glob, os
rows=[]
for f in sorted(glob.glob('/tmp/rows/*.json')):
    rows += json.load(open(f))
json.dump(rows, open(os.environ['OUT']+'/rows.json','w'), indent=1)
print(len(rows), 'rows')
PY
for f in /tmp/logs/*.log; do echo "== $f"; tail -n 12 $f; done > $OUT/logs.txt
