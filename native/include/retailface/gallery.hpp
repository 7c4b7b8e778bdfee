// A face gallery: templates (L2-normalised vectors) of subjects, searched by cosine similarity.
//
// Storage: one slot per template holds its vector, template id and subject id; freed slots are
// reused. The same slot number is the template's label in an hnswlib graph, so a removed
// template is marked deleted in the graph and re-added in place when its slot is reused.
//
// Search returns subjects, not templates: a subject's score is its best template's score.
// Each query picks a plan from the size of what it may see:
//   - exact scan over every live slot when the gallery is small,
//   - exact scan over the allowed subjects' slots when a filter selects few templates,
//   - hnswlib graph search (with the filter inside the graph walk when there is one) otherwise.
// A filter is never applied to a top-k after the fact, which would silently lose subjects.
//
// Locking: a std::shared_mutex; searches share it, add/remove take it exclusively.
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

namespace retailface {

enum class Decision : int8_t { kMatch = 1, kNoMatch = 2, kAmbiguous = 3 };
enum class Plan : int8_t {
  kEmpty = 0,
  kExactScan = 1,
  kGraph = 2,
  kFilteredScan = 3,
  kFilteredGraph = 4,
  kCodeScan = 5,
};

struct GalleryParams {
  size_t dim = 128;
  size_t capacity = 1024;
  size_t M = 16;
  size_t ef_construction = 200;
  size_t ef_search = 64;
  size_t threads = 2;
  size_t exact_below = 20000;        // galleries up to this size are always scanned exactly
  size_t filtered_scan_below = 4096; // filters selecting up to this many templates are scanned exactly
  bool graph_for_global = false;      // large unfiltered galleries: hnswlib graph instead of the code scan
  size_t min_candidates = 256;        // code scan: templates re-ranked in float, at least...
  size_t candidate_divisor = 400;     // ...and one in this many of the gallery
};

// Sign codes of random projections (SimHash): the Hamming distance between two codes estimates the
// angle between the vectors whatever their spectrum, so a scan of 32-byte codes finds the few
// candidates worth an exact float comparison. Face queries sit far from every template, where a
// graph walk loses its way; an exhaustive scan of compact codes does not.
constexpr size_t kCodeBits = 256;
constexpr size_t kCodeWords = kCodeBits / 64;

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
  // Copies of every live template, for snapshots.
  void templates(std::vector<int64_t>& template_ids, std::vector<int64_t>& subject_ids,
                 std::vector<float>& vectors) const;

 private:
  struct Candidate {
    int64_t subject;
    int64_t template_id;
    float score;
  };

  void ensure_capacity(size_t needed);
  void remove_slot(size_t slot);
  void search_one(const float* query, size_t top_k, float threshold, float margin,
                  const std::unordered_set<int64_t>* allowed, size_t allowed_templates, SearchOutput& out,
                  size_t row) const;
  void scan_slots(const float* query, const std::vector<size_t>& slots,
                  std::unordered_map<int64_t, Candidate>& best) const;
  void scan_all(const float* query, std::unordered_map<int64_t, Candidate>& best) const;
  float similarity(const float* a, const float* b) const;
  void encode(const float* vector, uint64_t* code) const;
  void code_scan(const float* query, size_t top_k, std::unordered_map<int64_t, Candidate>& best) const;

  GalleryParams params_;
  hnswlib::InnerProductSpace space_;
  hnswlib::DISTFUNC<float> distance_;  // hnswlib's SIMD 1 - <a, b>
  void* distance_param_;
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> index_;
  std::vector<float> vectors_;
  std::vector<float> projections_;  // kCodeBits x dim, fixed seed
  std::vector<uint64_t> codes_;     // kCodeWords per slot
  std::vector<int64_t> slot_template_, slot_subject_;
  std::vector<uint8_t> live_;
  std::vector<size_t> free_slots_;
  size_t used_slots_ = 0;  // slots ever handed out (live or free)
  std::unordered_map<int64_t, size_t> template_slot_;
  std::unordered_map<int64_t, std::vector<size_t>> subject_slots_;
  mutable std::shared_mutex mutex_;
};

}  // namespace retailface
