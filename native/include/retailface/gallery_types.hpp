// What every part of the gallery shares: its parameters (the one home of their defaults, which the
// Python module exposes as DEFAULT_PARAMS), the plans a search can take, the decisions it reports and
// the output of a search.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace retailface {

// The values of the proto's retailface.v1.Decision (a test checks that they stay equal).
enum class Decision : int8_t { kMatch = 1, kNoMatch = 2, kAmbiguous = 3 };

enum class Plan : int8_t {
  kEmpty = 0,
  kExactScan = 1,
  kGraph = 2,
  kFilteredScan = 3,
  kFilteredGraph = 4,
  kCodeScan = 5,
  kFilteredCodeScan = 6,  // the code scan over the allowed slots only (wide filters)
};

struct GalleryParams {
  size_t dim = 128;
  size_t capacity = 1024;
  size_t M = 16;
  size_t ef_construction = 200;
  size_t ef_search = 64;
  size_t threads = 2;
  size_t exact_below = 20000;        // galleries up to this size are always scanned exactly
  size_t filtered_scan_below = 4096; // filters selecting up to this many templates are always scanned exactly
  bool graph_for_global = false;      // large unfiltered galleries: hnswlib graph instead of the code scan (needs hnsw_graph)
  size_t min_candidates = 256;        // code scan: templates re-ranked on their stored rows, at least...
  size_t candidate_divisor = 4000;    // ...and one in this many of the gallery
  // Two passes (when they let through at most 1/8 of the gallery): the first compares the codes' first halves
  // and keeps max(first_pass_divisor x the re-ranked, 1/first_pass_share of the gallery); the second reads
  // the other halves of those (one cache line each). 1 and 1: one pass over whole codes. The defaults read half
  // the codes' bytes at 1M and 10M and keep parity >= 0.99 at 100k-10M (BENCHMARKS.md compares the variants);
  // a gallery of under 64k templates keeps one pass (32 x 256 re-ranked is over 1/8 of it).
  size_t first_pass_divisor = 32;
  size_t first_pass_share = 128;
  // Filters selecting up to 1/share of the gallery are scanned exactly (int8 copies, float re-score); wider
  // ones take the code scan over the allowed slots. The int8 scan reads 4x the code scan's bytes per
  // template, but only the allowed ones: memory traffic is equal at a quarter (see BENCHMARKS.md).
  size_t filtered_scan_share = 4;
  // Keep an hnswlib graph over the templates. No plan but the graph ones (graph_for_global) walks it, so by
  // default there is none: an add stores the vector, its code and its ids, with no graph insert. Asking for
  // graph_for_global (at construction or later) builds it from the stored vectors.
  bool hnsw_graph = false;
};

// What the gallery holds in memory, part by part (bytes); memory_bytes is their sum.
struct MemoryParts {
  size_t vectors = 0;  // the float copy of every slot's vector (hnswlib's when there is a graph, ours otherwise)
  size_t graph = 0;    // hnswlib's links, labels, locks and per-element overhead; 0 without a graph
  size_t codes = 0;    // the sign codes
  size_t ids = 0;      // slot -> template / subject / liveness, the id maps
  size_t filters = 0;  // the cached filters (slot lists, int8 copies, masks)
  size_t total() const { return vectors + graph + codes + ids + filters; }
};

struct SearchOutput {
  size_t n = 0, top_k = 0;
  std::vector<int64_t> subjects, template_ids;
  std::vector<float> scores;
  std::vector<int8_t> decisions, plans;
};

}  // namespace retailface
