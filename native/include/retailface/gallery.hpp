// A face gallery: templates (L2-normalised vectors) of subjects, searched by cosine similarity.
//
// Search returns subjects, not templates: a subject's score is its best template's score. The Gallery is
// the facade over the parts that do the work, one responsibility each:
//   slots.hpp         slot storage: ids, sign codes, the stored int8 rows (quantize.hpp), the optional graph
//   planner.hpp       each query's plan, from the size of what it may see
//   code_scan.hpp     the sign-code scan with a re-rank on the stored rows (large galleries, wide filters)
//   filter_cache.hpp  a filter's slots and plan, kept until the gallery changes
//   int8_scan.hpp     the exact scan of a filter's int8 copies
//   decision.hpp      MATCH / NO_MATCH / AMBIGUOUS from the best subjects
//
// Locking: a std::shared_mutex; searches share it, add/remove take it exclusively. A batch add
// encodes (and, with a graph, inserts into it) on `threads` threads (hnswlib's per-node locks make that safe).
//
// The graph (GalleryParams::hnsw_graph) is off by default: only the graph plans walk it. Asking for them
// (set_graph_for_global(true), or graph_for_global at construction) on a graph-less gallery builds it then, from
// the stored vectors: under the shared lock, so searches go on meanwhile (adds and removes wait), and again if a
// change slipped in before it could be installed. graph_build_seconds() reports how long the last build took.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <vector>

#include "retailface/code_scan.hpp"
#include "retailface/filter_cache.hpp"
#include "retailface/gallery_types.hpp"
#include "retailface/kernels.hpp"
#include "retailface/slots.hpp"
#include "retailface/top_subjects.hpp"

namespace retailface {

class Gallery {
 public:
  explicit Gallery(const GalleryParams& params);

  // vectors: n x dim, row-major. Re-adding an existing template id replaces its vector/subject. The gallery keeps
  // the stored form (quantize.hpp), not the float vector.
  void add(const int64_t* template_ids, const int64_t* subject_ids, const float* vectors, size_t n);
  // Adds templates already in stored form (a snapshot's, from `stored`): rows n x dim, scales n, codes n x
  // kCodeWords. No rounding and no encoding: a copy into the slots.
  void restore(const int64_t* template_ids, const int64_t* subject_ids, const int8_t* rows, const float* scales,
               const uint64_t* codes, size_t n);
  size_t remove(const int64_t* template_ids, size_t n);
  size_t remove_subject(int64_t subject_id);

  // queries: n x dim. allowed: sorted unique subject ids, or nullptr for no filter.
  SearchOutput search(const float* queries, size_t n, size_t top_k, float threshold, float margin,
                      const int64_t* allowed, size_t allowed_count) const;

  size_t size() const;
  size_t subject_count() const;
  size_t memory_bytes() const { return memory().total(); }
  MemoryParts memory() const;
  double graph_build_seconds() const;
  size_t dim() const { return params_.dim; }
  GalleryParams params() const;
  void set_threads(size_t threads);
  void set_ef(size_t ef);
  // Building the graph first if the gallery has none (see above).
  void set_graph_for_global(bool graph);
  // Code scan: re-rank max(min_candidates, size / candidate_divisor) templates in float.
  void set_candidates(size_t min_candidates, size_t candidate_divisor);
  // Code scan: the first pass lets through max(divisor x the re-ranked, 1/share of the gallery).
  void set_first_pass(size_t divisor, size_t share);
  void set_filtered_scan_share(size_t share);
  // Code path of the scan kernels on this CPU ("avx512" or "x86-64-v3").
  static const char* isa() { return kernels::isa(); }
  // Every live template in stored form, for snapshots.
  StoredTemplates stored() const;

 private:
  // Builds and installs the graph unless there is one; takes the locks itself.
  void ensure_graph();
  std::shared_ptr<const FilterEntry> filter_for(const int64_t* allowed, size_t allowed_count) const;
  // Up to kernels::kMaxQueries queries in one pass over the codes.
  void scan_codes(const float* queries, size_t count, TopSubjects* best, const FilterEntry* filter, size_t shards) const;
  void collect(Plan plan, const float* query, size_t top_k, const FilterEntry* filter, TopSubjects& best) const;

  GalleryParams params_;  // capacity: as asked at construction (slots_ knows the current one)
  Slots slots_;
  SignCoder coder_;
  uint64_t version_ = 0;  // bumped by every change; invalidates cached filters
  double graph_build_seconds_ = 0;  // of the last graph built on demand
  mutable std::shared_mutex mutex_;
  mutable FilterCache filters_;
};

}  // namespace retailface
