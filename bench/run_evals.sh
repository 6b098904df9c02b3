#!/usr/bin/env bash
# Reproduce the evaluation figures of docs/results.md (default configuration).
# Usage: bash bench/run_evals.sh [retrieval|answers|all]   (from the repository root)
# Runs land in docs/eval-runs/<name>/ with the data set's ATTRIBUTION file beside them.
set -euo pipefail
cd "$(dirname "$0")/.."
EVAL=${RAGCHAT_EVAL_DATA:-../shared/eval}
OUT=docs/eval-runs
WHAT=${1:-all}
mkdir -p "$OUT"

run() {  # name, attribution dir, ragchat eval arguments...
  local name=$1 attribution=$2; shift 2
  rm -rf "${OUT:?}/$name"
  .venv/bin/ragchat eval "$@" --out "$OUT/$name"
  [[ -z $attribution ]] || cp "$attribution/ATTRIBUTION.md" "$OUT/$name/"
}

if [[ $WHAT == retrieval || $WHAT == all ]]; then
  for set in piaf_fr xquad_en xquad_en_q_es xquad_en_q_de; do
    run "retrieval-$set" "$EVAL/$set" "$EVAL/${set}_mini/questions.jsonl" \
      --docs "$EVAL/$set/documents.jsonl" --retrieval-only
  done
fi
if [[ $WHAT == answers || $WHAT == all ]]; then
  run answers-hammouchi "" eval/hammouchi/questions.jsonl --docs eval/hammouchi/documents.jsonl
  run answers-piaf_fr-50 "$EVAL/piaf_fr" "$EVAL/piaf_fr_mini/questions.jsonl" \
    --docs "$EVAL/piaf_fr/documents.jsonl" --sample 50 --seed 0
fi
