#!/usr/bin/env bash
# Reproduce the evaluation figures of docs/results.md (default configuration).
# Usage: bash bench/run_evals.sh [retrieval|passages|answers|heldout|heldout-answers|heldout-retrieval|all]
#        (from the repository root)
#   retrieval: each set's full document pool ingested once with the defaults, then the *_mini
#              questions with --retrieval hybrid (the default), dense and keyword
#   passages:  the same on whole passages (no chunking), dense and keyword: the protocol of the
#              baselines in ../shared/MODELS.md
#   answers:   the default model on the sample-article gold set, 50 sampled piaf_fr_mini and 50
#              xquad_en_q_es_mini questions, the unanswerable questions of eval/unanswerable/
#              and the English questions over French passages of eval/piaf_fr_q_en/
#   heldout:   the held-out unanswerable questions of eval/unanswerable_heldout/ (measuring only)
#   heldout-answers: 50 answerable questions of piaf_fr and of xquad_en_q_es outside their
#              *_mini questions (sampled, seed 0), answered with the defaults (measuring only)
#   heldout-retrieval: 300 questions of each set outside its *_mini questions (sampled, seed 0),
#              retrieval only, on the full document pool ingested with the defaults
# Runs land in docs/eval-runs/<name>/ with the data set's ATTRIBUTION file beside them.
# RAGCHAT_EVAL_STORES=DIR keeps the ingested stores there (reused by a later run).
set -euo pipefail
cd "$(dirname "$0")/.."
EVAL=${RAGCHAT_EVAL_DATA:-../shared/eval}
OUT=docs/eval-runs
WHAT=${1:-all}
if [[ -n ${RAGCHAT_EVAL_STORES:-} ]]; then
  STORES=$RAGCHAT_EVAL_STORES
  mkdir -p "$STORES"
else
  STORES=$(mktemp -d -t ragchat-eval-stores-XXXX)
  trap 'rm -rf "$STORES"' EXIT
fi
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
h="$STORES/answers-hammouchi" piaf="$STORES/answers-piaf_fr" es="$STORES/answers-xquad_en_q_es"
if [[ $WHAT == answers || $WHAT == heldout* || $WHAT == all ]]; then
  .venv/bin/ragchat ingest eval/hammouchi/documents.jsonl --store "$h"
  .venv/bin/ragchat ingest "$EVAL/piaf_fr/documents.jsonl" --store "$piaf"
  .venv/bin/ragchat ingest "$EVAL/xquad_en_q_es/documents.jsonl" --store "$es"
fi
heldout_questions() {  # set: prints the path of the set's questions less its *_mini ones
  local set=$1 questions="$STORES/heldout-$1.jsonl"
  .venv/bin/python - "$EVAL/$set/questions.jsonl" "$EVAL/${set}_mini/questions.jsonl" \
    > "$questions" <<'PY'
import json, sys
mini = {json.loads(line)["id"] for line in open(sys.argv[2], encoding="utf-8")}
for line in open(sys.argv[1], encoding="utf-8"):
    if json.loads(line)["id"] not in mini:
        print(line, end="")
PY
  echo "$questions"
}
if [[ $WHAT == heldout-retrieval || $WHAT == all ]]; then
  for set in piaf_fr xquad_en xquad_en_q_es xquad_en_q_de; do
    store="$STORES/answers-$set"  # the default ingest, shared with the answer runs
    [[ -d $store ]] || .venv/bin/ragchat ingest "$EVAL/$set/documents.jsonl" --store "$store"
    run "heldout-retrieval-$set" "$EVAL/$set" "$(heldout_questions "$set")" --store "$store" \
      --sample 300 --seed 0 --retrieval-only
  done
fi
if [[ $WHAT == heldout-answers || $WHAT == all ]]; then  # answers outside the *_mini sets
  run heldout-answers-piaf_fr-50 "$EVAL/piaf_fr" "$(heldout_questions piaf_fr)" \
    --store "$piaf" --sample 50 --seed 0
  run heldout-answers-xquad_en_q_es-50 "$EVAL/xquad_en_q_es" \
    "$(heldout_questions xquad_en_q_es)" --store "$es" --sample 50 --seed 0
fi
if [[ $WHAT == heldout || $WHAT == all ]]; then
  held=eval/unanswerable_heldout
  run heldout-hammouchi "" $held/hammouchi.jsonl --store "$h"
  run heldout-piaf_fr "$EVAL/piaf_fr" $held/piaf_fr.jsonl --store "$piaf"
  run heldout-xquad_en_q_es "$EVAL/xquad_en_q_es" $held/xquad_en_q_es.jsonl --store "$es"
fi
if [[ $WHAT == answers || $WHAT == all ]]; then
  run answers-hammouchi "" eval/hammouchi/questions.jsonl --store "$h"
  run answers-hammouchi-unanswerable "" eval/unanswerable/hammouchi.jsonl --store "$h"
  run answers-piaf_fr-50 "$EVAL/piaf_fr" "$EVAL/piaf_fr_mini/questions.jsonl" \
    --store "$piaf" --sample 50 --seed 0
  run answers-piaf_fr-unanswerable "$EVAL/piaf_fr" eval/unanswerable/piaf_fr.jsonl --store "$piaf"
  run answers-piaf_fr_q_en "$EVAL/piaf_fr" eval/piaf_fr_q_en/questions.jsonl --store "$piaf"
  run answers-xquad_en_q_es-50 "$EVAL/xquad_en_q_es" "$EVAL/xquad_en_q_es_mini/questions.jsonl" \
    --store "$es" --sample 50 --seed 0
  run answers-xquad_en_q_es-unanswerable "$EVAL/xquad_en_q_es" \
    eval/unanswerable/xquad_en_q_es.jsonl --store "$es"
fi
