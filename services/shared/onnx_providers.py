"""How a model's onnxruntime session is made (execution providers, options, threads): one rule for every model."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

PROVIDER_CHOICES = ("auto", "cpu", "cuda")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def choose_providers(provider: str, available: list[str] | None = None) -> list[str]:
    """Providers for 'auto' (CUDA when present, else CPU), 'cpu', or 'cuda' (which must be present)."""
    if available is None:
        import onnxruntime as ort  # only the model services load onnxruntime

        available = ort.get_available_providers()
    if provider == "cpu":
        return [CPU]
    if provider == "cuda":
        if CUDA not in available:
            raise ValueError(f"{CUDA} is not available (onnxruntime has {', '.join(available)})")
        return [CUDA, CPU]
    if provider == "auto":
        return [CUDA, CPU] if CUDA in available else [CPU]
    raise ValueError(f"unknown execution provider {provider!r}; expected one of {', '.join(PROVIDER_CHOICES)}")


GRAPH_OPTIMIZATIONS = ("disabled", "basic", "extended", "all")  # onnxruntime's levels, by their setting value


def open_session(
    model: str | bytes, provider: str = "auto", intra_op_threads: int = 0, optimization: str = "all"
) -> InferenceSession:
    """A session run the same way for every model: sequential, one inter-op thread, onnxruntime's logs quiet.

    `model` is a file path or a serialised ModelProto; `intra_op_threads` 0 is onnxruntime's default.

    Memory: onnxruntime's memory pattern (a pre-planned allocation per input shape, kept for every
    shape the session has seen) is off. Frames come in many sizes (detection pads each to a multiple
    of 32, and re-runs close-ups shrunk), and with it on, each new shape grew the arena for good:
    the detector's RSS went 129 -> 231 -> 267 -> 288 MB over 40, 80 and 120 random frame sizes,
    and without it stays at 244 MB (then 218) whatever the sizes, at the same speed within this
    machine's noise (docs/RELIABILITY.md, ## Soak). The CPU arena stays on: it is bounded by the
    largest run, which each service bounds (detection: its input size; embedding: `max_run_chips`).
    """
    import onnxruntime as ort

    levels = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if optimization not in levels:
        raise ValueError(f"unknown graph optimisation {optimization!r}; expected one of {', '.join(levels)}")
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[optimization]
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = intra_op_threads
    options.log_severity_level = 3  # keep onnxruntime's own warnings out of the service logs
    options.enable_mem_pattern = False  # one plan per input shape, never released: see above
    return ort.InferenceSession(model, sess_options=options, providers=choose_providers(provider))


def intra_op_thread_count(requested: int) -> int:
    """The threads a session runs on: `requested`, or for 0 one per core this process may use."""
    if requested:
        return requested
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
