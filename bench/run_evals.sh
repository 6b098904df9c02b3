#!/usr/bin/env bash
# Reproduce the evaluation figures of docs/results.md (default configuration).
# Usage: bash bench/run_evals.sh [retrieval|passages|answers|all]   (from the repository root)
#   retrieval: each set's full document pool ingested once with the defaults, then the *_mini
#              questions with --retrieval hybrid (the default), dense and keyword
#   passages:  the same on whole passages (no chunking), dense and keyword: the protocol of the
#              baselines in ../shared/MODELS.md
#   answers:   the default model on the sample-article gold set and 50 piaf_fr_mini questions
# Runs land in docs/eval-runs/<name>/ with the data set's ATTRIBUTION file beside them.
set -euo pipefail
cd "$(dirname "$0")/.."
EVAL=${RAGCHAT_EVAL_DATA:-../shared/eval}
OUT=docs/eval-runs
WHAT=${1:-all}
STORES=$(mktemp -d -t ragchat-eval-stores-XXXX)
trap 'rm -rf "$STORES"' EXIT
mkdir -p "$OUT"

run() {  # name, attribution dir, ragchat eval arguments...
  local name=$1 attribution=$2; shift 2
  rm -rf "${OUT:?}/$name"
  .venv/bin/ragchat eval "$@" --out "$OUT/$name"
  [[ -z $attribution ]] || cp "$attribution/ATTRIBUTION.md" "$OUT/$name/"
}

retrieval_runs() {  # prefix (run names), then VAR=value settings for ingest and eval
  local prefix=$1; shift
  (
    export "$@"
    for set in piaf_fr xquad_en xquad_en_q_es xquad_en_q_de; do
      local store="$STORES/$prefix-$set"
      .venv/bin/ragchat ingest "$EVAL/$set/documents.jsonl" --store "$store"
      for mode in hybrid dense keyword; do
        [[ $prefix == passages && $mode == hybrid ]] && continue
        run "$prefix-$mode-$set" "$EVAL/$set" "$EVAL/${set}_mini/questions.jsonl" \
          --store "$store" --retrieval "$mode" --retrieval-only
      done
    done
  )
}

if [[ $WHAT == retrieval || $WHAT == all ]]; then
  retrieval_runs retrieval RAGCHAT_CHUNK_SIZE=1000 RAGCHAT_CHUNK_OVERLAP=200
fi
if [[ $WHAT == passages || $WHAT == all ]]; then
  retrieval_runs passages RAGCHAT_CHUNK_SIZE=1000000 RAGCHAT_CHUNK_OVERLAP=0
fi
if [[ $WHAT == answers || $WHAT == all ]]; then
  run answers-hammouchi "" eval/hammouchi/questions.jsonl --docs eval/hammouchi/documents.jsonl
  run answers-piaf_fr-50 "$EVAL/piaf_fr" "$EVAL/piaf_fr_mini/questions.jsonl" \
    --docs "$EVAL/piaf_fr/documents.jsonl" --sample 50 --seed 0
fi
