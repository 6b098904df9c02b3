#!/usr/bin/env bash
# Capture a first session's terminal output into docs/cli-session.md (issue 20): --help, ingest
# of a folder of PDFs, search, ask and eval, in a fresh data directory, with the default models.
# Progress bars are shown in their last state. Run from the repository root after install.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
WORK=$(mktemp -d)
export RAGCHAT_DATA_DIR="$WORK/data" COLUMNS=100
# a folder of PDFs: the gold-set passages of the sample article, one page each, two files
$BIN/python - "$WORK/pdfs" <<'PY'
import json, sys, textwrap
from pathlib import Path
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.backends.backend_pdf import PdfPages
out = Path(sys.argv[1]); out.mkdir(parents=True)
records = [json.loads(l) for l in open("eval/hammouchi/documents.jsonl")]
for name, part in [("visit-part1.pdf", records[:3]), ("visit-part2.pdf", records[3:])]:
    with PdfPages(out / name) as pdf:
        for r in part:
            fig = plt.figure(figsize=(8.5, 11))
            fig.text(0.08, 0.95, "\n".join(textwrap.wrap(r["text"], 90)), va="top", fontsize=8)
            pdf.savefig(fig); plt.close(fig)
PY
run() {  # the command as typed, then its output (a progress bar in its last state)
  echo '```console'
  printf '$ ragchat'; printf ' %q' "$@"; echo
  $BIN/ragchat "$@" 2>&1 | tr '\r' '\n' | sed 's/\x1b\[A//g' | awk 'NF' |
    awk '/^(reading|embedding|evaluating)/ {if (!($1 in last)) order[++n]=$1; last[$1]=$0; next}
         {print} END {for (i=1; i<=n; i++) print last[order[i]]}'
  echo '```'
  echo
}
{
  echo "# A first session, as the terminal shows it"
  echo
  echo "Captured by \`scripts/capture_cli.sh\` on $(date -u +%Y-%m-%d) ($(nproc) cores, $(uname -m));"
  echo "the PDFs are the sample article's passages printed to two files."
  echo
  run --help
  run ingest "$WORK/pdfs"
  run list
  run search "Who did Hammouchi meet?" -k 2
  run ask "Who did Hammouchi meet?"
  run eval eval/hammouchi/questions.jsonl --docs eval/hammouchi/documents.jsonl --limit 3 \
    --out "$WORK/run"
} > docs/cli-session.md
sed -i "s#$WORK#/tmp/demo#g" docs/cli-session.md
rm -rf "$WORK"
echo "wrote docs/cli-session.md"
