"""The embedding engine's memory and speed against the batch sizes a camera burst brings, with and
without runs bounded (docs/RELIABILITY.md, ## Soak, memory).

    python benchmarks/soak/arena_probe.py [--run-chips 0] [--threads 1]

`--run-chips 0` is the service's default (4 chips per onnxruntime run on CPU); `--run-chips 64`
runs every call whole, as the engine did before. Prints the RSS after the engine is ready, after
calls of up to 4, 8, 16, 32 and 64 chips, and chips per second for a mix of small calls; the last
stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

import numpy as np
import psutil

from retailface.services.embedding.engine import EmbeddingEngine, EmbeddingSettings

MIX = (1, 1, 1, 2, 2, 3, 4, 5, 6, 8)  # chips per call: mostly one or two faces, sometimes a group
MIX_CALLS = 150


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-chips", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    process = psutil.Process()

    def rss() -> float:
        return round(float(process.memory_info().rss) / 2**20, 1)

    engine = EmbeddingEngine(
        EmbeddingSettings(intra_op_threads=args.threads, max_batch_chips=64, max_run_chips=args.run_chips)
    )
    chips = list(np.random.default_rng(0).integers(0, 256, (64, 112, 112, 3), dtype=np.uint8))
    result: dict[str, object] = {"run_chips": engine.run_chips, "threads": args.threads, "rss_mb_ready": rss()}
    for top in (4, 8, 16, 32, 64):
        for size in range(1, top + 1, max(1, top // 8)):
            engine.embed(chips[:size], include_attributes=True)
        engine.embed(chips[:top], include_attributes=True)
        result[f"rss_mb_after_{top}"] = rss()
    rng = random.Random(0)
    sizes = [rng.choice(MIX) for _ in range(MIX_CALLS)]
    start = time.perf_counter()
    for size in sizes:
        engine.embed(chips[:size], include_attributes=True)
    result["chips_per_s_mix"] = round(sum(sizes) / (time.perf_counter() - start), 1)
    result["rss_mb_end"] = rss()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
