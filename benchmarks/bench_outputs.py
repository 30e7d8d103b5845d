"""What the pipeline deliverables cost: the final demo shot cold, without and with --exr
(the issue's budget: EXR passes add at most 15 %), and with every deliverable on.

Each run is a fresh child process into a fresh folder (no stage cache), one after the
other. About 6 minutes on a 2-core machine.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import demo_args, run  # noqa: E402


def main() -> None:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = demo_args(tmp) + ["--size", "1280", "--duration", "6"]
        # A throwaway first run: numba compiles its kernels into __pycache__ once.
        run(base + ["--preview", "--duration", "1"], "warm-up (numba compile)")
        for label, extra in (("final, no EXR", []), ("final, --exr", ["--exr"]),
                             ("final, --exr --usd --prores --burn-in --passes",
                              ["--exr", "--usd", "--prores", "--burn-in", "--passes"])):
            out = Path(tmp) / label.replace(" ", "_").replace(",", "").replace("-", "")
            r = run(base + extra, label, out)
            size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and ".derrumbe" not in p.parts)
            r["output_mb"] = round(size / 1e6, 1)
            results[label] = r
    a, b = results["final, no EXR"]["wall_s"], results["final, --exr"]["wall_s"]
    print(f"EXR overhead: {100 * (b / a - 1):+.1f} % of the final render ({a:.1f} s -> {b:.1f} s)")
    print(json.dumps({"exr_overhead_pct": round(100 * (b / a - 1), 1), **{k: v for k, v in results.items()}}))


if __name__ == "__main__":
    main()
