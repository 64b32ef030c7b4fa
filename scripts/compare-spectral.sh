#!/usr/bin/env bash
# Runs `palisade audit` and Spectral with the OWASP ruleset on every description in a folder
# and prints, per OWASP API Top 10 (2023) category, the rules of each and their finding counts.
#
#   scripts/compare-spectral.sh [SPECS_DIR]      (default: ../shared/testdata/specs)
#
# Spectral is installed with npm into a temporary folder (the npm registry only); nothing
# stays behind.
set -euo pipefail
cd "$(dirname "$0")/.."
SPECS=${1:-../shared/testdata/specs}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cargo build --release --locked -q -p palisade
(cd "$WORK" && npm init -y >/dev/null && npm install --no-audit --no-fund --loglevel=error \
  @stoplight/spectral-cli @stoplight/spectral-owasp-ruleset >/dev/null)
cat > "$WORK/.spectral.mjs" <<'JS'
import owasp from "@stoplight/spectral-owasp-ruleset";
export default { extends: [owasp] };
JS
for f in "$SPECS"/*.json "$SPECS"/*.yaml "$SPECS"/*.yml; do
  [ -e "$f" ] || continue
  n=$(basename "$f")
  "$WORK/node_modules/.bin/spectral" lint "$f" --ruleset "$WORK/.spectral.mjs" -f json -q \
    > "$WORK/$n.spectral.json" 2>/dev/null || true
  target/release/palisade audit "$f" --format json > "$WORK/$n.palisade.json"
done
python3 - "$WORK" <<'PY'
import collections, glob, json, os, re, sys
work = sys.argv[1]
sp = collections.defaultdict(collections.Counter)
pa = collections.defaultdict(collections.Counter)
for f in sorted(glob.glob(os.path.join(work, "*.spectral.json"))):
    for x in json.load(open(f)):
        m = re.match(r"owasp:(api\d+):2023-(.*)", x["code"])
        sp[m.group(1).upper() if m else "other"][m.group(2) if m else x["code"]] += 1
    p = json.load(open(f.replace(".spectral.json", ".palisade.json")))
    cats = {r["id"]: r["owasp"].split(":")[0] for r in p["rules"]}
    for fi in p["report"]["findings"]:
        pa[cats[fi["rule"]]][fi["rule"]] += 1
print("| category | Spectral OWASP rules (findings) | palisade audit rules (findings) |")
print("|---|---|---|")
for cat in sorted(set(sp) | set(pa)):
    s = ", ".join(f"{k} ({v})" for k, v in sorted(sp[cat].items())) or "none"
    q = ", ".join(f"{k} ({v})" for k, v in sorted(pa[cat].items())) or "none"
    print(f"| {cat} | {s} | {q} |")
PY
