"""`make bench-vision`: detection and embedding against OpenCV's in-process path, on 1 and 2 threads,
plus the gRPC overhead of a call. Runs bench_detect and bench_embed in one process, one after the
other, and prints one JSON object as the last line: the issue's keys at top level (2 threads, the
machine's core count), and every figure per thread count below them."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_detect
import bench_embed

TOP_LEVEL = {
    "detect_ms_p50_640": ("detect", "detect_ms_p50_640"),
    "detect_ms_p50_1280": ("detect", "detect_ms_p50_1280"),
    "opencv_detect_ms_p50_640": ("detect", "opencv_detect_ms_p50_640"),
    "opencv_detect_ms_p50_1280": ("detect", "opencv_detect_ms_p50_1280"),
    "detect_ratio_640": ("detect", "ratio_640"),
    "grpc_overhead_ms_p50": ("detect", "grpc_overhead_ms_p50"),
    "embed_ms_per_face_b1": ("embed", "float_ms_per_face_b1"),
    "embed_ms_per_face_b8": ("embed", "float_ms_per_face_b8"),
    "embed_ms_per_face_b32": ("embed", "embed_ms_per_face_b32"),
    "embed_model_b32": ("embed", "embed_model_b32"),
    "opencv_embed_ms_per_face": ("embed", "opencv_embed_ms_per_face"),
    "embed_ratio_b32": ("embed", "embed_ratio_b32"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    per_threads: dict[str, dict[str, Any]] = {}
    for threads in args.threads:
        print(f"detection, {threads} thread(s)...", file=sys.stderr, flush=True)
        detect = bench_detect.run(threads)
        print(f"embedding, {threads} thread(s)...", file=sys.stderr, flush=True)
        embed = bench_embed.run(threads)
        per_threads[f"threads_{threads}"] = {"detect": detect, "embed": embed}
    headline_threads = f"threads_{max(args.threads)}"
    headline = per_threads[headline_threads]
    report: dict[str, Any] = {"headline_threads": max(args.threads)}
    for key, (part, name) in TOP_LEVEL.items():
        if name in headline[part]:
            report[key] = headline[part][name]
    report |= per_threads
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
