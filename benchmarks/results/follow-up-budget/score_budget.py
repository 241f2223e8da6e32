"""python score_budget.py HOME USER BUDGET asls|base OUT.json

Held-out answers of a stored eval user at a chosen token budget, scored as the eval scores them (style x helpful)."""
import os, sys, json
os.environ["ASLS_HOME"] = sys.argv[1]
from asls_mlx.assistant import Assistant
from asls_mlx.config import AssistantConfig
from asls_mlx.evaluation.personas import PERSONAS
from asls_mlx.evaluation.runner import heldout_record
from pathlib import Path
r = json.load(open(Path(__file__).resolve().parents[1] / "eval-quick-2026-11-28b" / "results.json"))
prompts = [run["heldout_prompts"] for run in r["runs"] if run["persona"] == "follow_up"][0]
user, budget, arm = sys.argv[2], int(sys.argv[3]), sys.argv[4]
cfg = AssistantConfig(profile_in_prompt=(arm != "base"), adapt=(arm != "base"))
with Assistant(user=user, config=cfg) as a:
    print("version", a.adapter_version, file=sys.stderr)
    out = a.answer_many(prompts, max_tokens=budget)
    from asls_mlx.adaptation.relevance import answer_pmi
    pmi = answer_pmi(a.engine.model, a.engine.tokenizer, prompts, out, a.config.system_prompt)
rec = heldout_record(PERSONAS["follow_up"], prompts, out, 3, pmi, [None] * len(prompts))
json.dump({"answers": out, "record": rec}, open(sys.argv[5], "w"), indent=1)
print(user, budget, "satisfaction", rec.get("satisfaction"), "quality", rec.get("quality_pass"), "issues", rec.get("issues"))
