// A face gallery: templates (L2-normalised vectors) of subjects, searched by cosine similarity.
//
// Storage: one slot per template holds its 256-bit sign code, template id and subject id; freed slots
// are reused. The same slot number is the template's label in an hnswlib graph, which keeps the only
// copy of the float vector; a removed template is marked deleted in the graph and re-added in place
// when its slot is reused.
//
// Search returns subjects, not templates: a subject's score is its best template's score.
// Each query picks a plan from the size of what it may see:
//   - exact scan over every live slot when the gallery is small,
//   - exact scan over the allowed subjects' slots when a filter selects few templates: their int8 copies,
//     packed with the cached filter, are scanned with a bound on the rounding, and every template the
//     bound cannot rule out is re-scored in float, so the result is the exact one,
//   - filtered hnswlib graph search (the filter inside the graph walk) when it selects many,
//   - for a large unfiltered gallery: an exhaustive scan of the sign codes with a float re-rank of
//     the nearest (default), or the hnswlib graph.
// A filter is never applied to a top-k after the fact, which would silently lose subjects.
//
// Locking: a std::shared_mutex; searches share it, add/remove take it exclusively. A batch add
// inserts into the graph on `threads` threads (hnswlib's per-node locks make that safe).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <hnswlib/hnswlib.h>

#include "retailface/kernels.hpp"

namespace retailface {

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
  bool graph_for_global = false;      // large unfiltered galleries: hnswlib graph instead of the code scan
  size_t min_candidates = 256;        // code scan: templates re-ranked in float, at least...
  size_t candidate_divisor = 400;     // ...and one in this many of the gallery
  // Filters selecting up to 1/share of the gallery are scanned exactly (int8 copies, float re-score); wider
  // ones take the code scan over the allowed slots. The int8 scan reads 4x the code scan's bytes per
  // template, but only the allowed ones: memory traffic is equal at a quarter (see BENCHMARKS.md).
  size_t filtered_scan_share = 4;
};

// Sign codes of random projections (SimHash): the Hamming distance between two codes estimates the
// angle between the vectors whatever their spectrum, so a scan of 32-byte codes finds the few
// candidates worth an exact float comparison. Face queries sit far from every template, where a
// graph walk loses its way; an exhaustive scan of compact codes does not.
using kernels::kCodeBits;
using kernels::kCodeWords;

// hnswlib metric over our runtime-dispatched inner product (AVX-512 where present), as 1 - <a, b>.
class InnerProductSpace : public hnswlib::SpaceInterface<float> {
 public:
  explicit InnerProductSpace(size_t dim) : dim_(dim) {}
  size_t get_data_size() override { return dim_ * sizeof(float); }
  hnswlib::DISTFUNC<float> get_dist_func() override { return &distance; }
  void* get_dist_func_param() override { return &dim_; }

 private:
  static float distance(const void* a, const void* b, const void* dim) {
    return 1.0f - kernels::dot(static_cast<const float*>(a), static_cast<const float*>(b),
                               *static_cast<const size_t*>(dim));
  }
  size_t dim_;
};

struct SearchOutput {
  size_t n = 0, top_k = 0;
  std::vector<int64_t> subjects, template_ids;
  std::vector<float> scores;
  std::vector<int8_t> decisions, plans;
};

class Gallery {
 public:
  explicit Gallery(const GalleryParams& params);

  // vectors: n x dim, row-major. Re-adding an existing template id replaces its vector/subject.
  void add(const int64_t* template_ids, const int64_t* subject_ids, const float* vectors, size_t n);
  size_t remove(const int64_t* template_ids, size_t n);
  size_t remove_subject(int64_t subject_id);

  // queries: n x dim. allowed: sorted unique subject ids, or nullptr for no filter.
  SearchOutput search(const float* queries, size_t n, size_t top_k, float threshold, float margin,
                      const int64_t* allowed, size_t allowed_count) const;

  size_t size() const;
  size_t subject_count() const;
  size_t memory_bytes() const;
  size_t dim() const { return params_.dim; }
  GalleryParams params() const;
  void set_threads(size_t threads);
  void set_ef(size_t ef);
  void set_graph_for_global(bool graph);
  // Code scan: re-rank max(min_candidates, size / candidate_divisor) templates in float.
  void set_candidates(size_t min_candidates, size_t candidate_divisor);
  void set_filtered_scan_share(size_t share);
  // Code path of the scan kernels on this CPU ("avx512" or "x86-64-v3").
  static const char* isa() { return kernels::isa(); }
  // Copies of every live template, for snapshots.
  void templates(std::vector<int64_t>& template_ids, std::vector<int64_t>& subject_ids,
                 std::vector<float>& vectors) const;

 private:
  // The `capacity` best distinct subjects seen so far, best first (ties: lower subject id first).
  class TopSubjects;
  // Live slots (and subject set) of one filter, kept for the next searches with the same filter
  // until the gallery changes: a store's cameras search with the same member list again and again.
  struct FilterEntry {
    uint64_t version = 0;
    std::vector<int64_t> allowed;
    std::vector<uint32_t> slots;
    std::unordered_set<int64_t> subjects;
    // Chosen once with the entry: everything the choice depends on (size, ef) bumps `version`.
    Plan plan = Plan::kEmpty;
    // For the filtered scan only: row i describes slots[i]. int8 copy of the vector (scale * row
    // approximates it), the norm of what the rounding lost and of the vector, and the subject, packed
    // so that a scan reads one contiguous block instead of a cache line per template.
    std::vector<int8_t> quantized;
    std::vector<float> scales, errors, norms;
    std::vector<int64_t> slot_subjects;
    // For the filtered code scan only: bit per slot, set where the slot is allowed.
    std::vector<uint64_t> mask;
    size_t bytes() const;
  };

  void ensure_capacity(size_t needed);
  void remove_slot(size_t slot);
  std::shared_ptr<const FilterEntry> filter_for(const int64_t* allowed, size_t allowed_count) const;
  Plan choose_plan(const FilterEntry* filter) const;
  void filtered_scan(const float* query, const FilterEntry& filter, TopSubjects& best) const;
  void collect(Plan plan, const float* query, size_t top_k, const FilterEntry* filter, TopSubjects& best) const;
  static void report(const TopSubjects& best, Plan plan, float threshold, float margin, SearchOutput& out,
                     size_t row);
  // The template's float vector, where hnswlib stores it.
  const float* vector_of(size_t slot) const {
    return reinterpret_cast<const float*>(index_->getDataByInternalId(slot_internal_[slot]));
  }
  float similarity(size_t slot, const float* query) const { return kernels::dot(query, vector_of(slot), params_.dim); }
  void encode(const float* vector, uint64_t* code) const;
  void store_code(size_t slot, const uint64_t* code);
  // Up to kernels::kMaxQueries queries in one pass over the codes.
  void code_scan(const float* queries, size_t count, TopSubjects* best, const FilterEntry* filter = nullptr) const;
  template <typename Work>
  void parallel_for(size_t count, Work&& work) const;

  GalleryParams params_;
  InnerProductSpace space_;
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> index_;
  std::vector<hnswlib::tableint> slot_internal_;  // slot -> hnswlib's internal id (where its vector is)
  std::vector<float> projections_;  // kCodeBits x dim, fixed seed
  std::vector<uint64_t> codes_;     // blocked layout, see kernels.hpp
  std::vector<int64_t> slot_template_, slot_subject_;
  std::vector<uint8_t> live_;
  std::vector<size_t> free_slots_;
  size_t used_slots_ = 0;  // slots ever handed out (live or free)
  uint64_t version_ = 0;   // bumped by every change; invalidates cached filters
  std::unordered_map<int64_t, size_t> template_slot_;
  std::unordered_map<int64_t, std::vector<size_t>> subject_slots_;
  mutable std::shared_mutex mutex_;
  mutable std::mutex filter_mutex_;
  mutable std::vector<std::shared_ptr<const FilterEntry>> filters_;  // most recent first
};

}  // namespace retailface
