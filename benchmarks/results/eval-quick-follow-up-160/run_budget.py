import sys
from pathlib import Path
import asls_mlx  # noqa
from asls_mlx.evaluation import runner
seed, out, tokens = int(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
personas = sys.argv[4].split(",") if len(sys.argv) > 4 else ["follow_up"]
r = runner.run_eval(arms=["base", "profile_prompt", "asls"], personas=personas, quick=True, seeds=[seed],
                    max_tokens=tokens, out_dir=out, progress=lambda m: print(m, flush=True))
