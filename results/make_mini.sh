#!/usr/bin/env bash
# Writes results/mini/ from the records of the mini sweeps (results/sweep_mini.yaml, its
# ablations results/sweep_mini_ablations.yaml, and the mini-outlier track
# results/sweep_mini_outlier.yaml): the leaderboard of both tracks (md, csv, html, plots)
# and, per seed method, the comparison tables its issue asks for, with paired per-sample
# deltas (t-interval 95% CIs) against the method, one table per track.
set -euo pipefail
cd "$(dirname "$0")/.."
VQ=${VQ:-.venv/bin/vqbench}
read -r -a SWEEPS <<<"${SWEEPS:-scratch/sweep_mini scratch/sweep_mini_outlier}"
OUT=results/mini

"$VQ" report "${SWEEPS[@]}" --out "$OUT" -q

# section FILE TITLE REPORT-ARGS...: appends one comparison (its command, then its tables)
section() {
  local file=$1 title=$2
  shift 2
  {
    printf '## %s\n\n```bash\n%s report %s %s\n```\n\n' "$title" "$VQ" "${SWEEPS[*]}" "$*"
    "$VQ" report "${SWEEPS[@]}" "$@"
    printf '\n'
  } >>"$OUT/$file"
}

header() {
  printf '# %s on the mini world\n\nMade by `results/make_mini.sh` from the sweep records; %s\n\n' \
    "$2" "bold paired deltas have a 95% CI that excludes 0." >"$OUT/$1"
}

header q_vdit.md "Q-VDiT against the baselines, and its ablations"
section q_vdit.md "W4A6 (and the TMD weight gamma, TQE / M ablations, where the ablations sweep ran)" \
  --settings fp '*-W4A6' 'q_vdit-W4A6-*' --paired q_vdit-W4A6
section q_vdit.md "W8A8" --settings fp '*-W8A8' --paired q_vdit-W8A8

header s2q_vdit.md "S2Q-VDiT against the baselines, and its ablations"
section s2q_vdit.md "W4A6 (and stratified / random SDS, STD off, symmetric GPTQ, where the ablations sweep ran)" \
  --settings fp '*-W4A6' 's2q_vdit-W4A6-*' 'gptq-W4A6-sym' --paired s2q_vdit-W4A6
section s2q_vdit.md "W8A8" --settings fp '*-W8A8' 'gptq-W8A8-sym' --paired s2q_vdit-W8A8

header qvd.md "QVD (reconstructed) against its matched base and the baselines"
for b in W8A8 W4A8 W4A4; do
  section qvd.md "$b against the matched base (GPTQ weights, static per-tensor activations, timestep layers quantized)" \
    --settings fp "qvd-$b*" "gptq-$b" "rtn-$b" --paired "qvd-$b-base"
done

header outliers.md "Outlier handling (RTN, SmoothQuant, QuaRot, ViDiT-Q) on the mini and mini-outlier tracks"
for b in W8A8 W4A8 W4A4; do
  section outliers.md "$b" --settings fp "rtn-$b" "smoothquant-$b" "quarot-$b" "quarot-$b-gptq" "viditq-$b" \
    --paired "rtn-$b"
done
OMP_NUM_THREADS=1 .venv/bin/python results/method_tables.py "${SWEEPS[@]}"
