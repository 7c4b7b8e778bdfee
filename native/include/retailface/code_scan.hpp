// The code scan: the plan for large galleries (and wide filters). Sign codes of random projections
// (SimHash): the Hamming distance between two codes estimates the angle between the vectors whatever
// their spectrum, so a scan of 32-byte codes finds the few candidates worth an exact float comparison.
// Face queries sit far from every template, where a graph walk loses its way; an exhaustive scan of
// compact codes does not.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "retailface/gallery_types.hpp"
#include "retailface/kernels.hpp"
#include "retailface/slots.hpp"
#include "retailface/top_subjects.hpp"

namespace retailface {

using kernels::kCodeBits;
using kernels::kCodeWords;

// The kCodeBits projections, drawn once from a fixed seed: codes must not change across restarts.
class SignCoder {
 public:
  explicit SignCoder(size_t dim);
  void encode(const float* vector, uint64_t* code) const;

 private:
  size_t dim_;
  std::vector<float> projections_;  // kCodeBits x dim
};

// Offers to best[q] the templates of query q (of `count` <= kernels::kMaxQueries, one pass over the codes
// for all of them) nearest in Hamming distance, re-scored on their stored rows: max(min_candidates, searchable /
// candidate_divisor) of them. The pass reads the codes' first halves, and a second half only where the first
// is among the nearest (GalleryParams::first_pass_divisor). `mask` (a bit per slot) restricts the scan to the
// allowed slots, of which there are `searchable`; without it every live slot is searchable. `shards` > 1
// splits the pass over that many threads (a single large search on an otherwise idle replica).
void code_scan(const Slots& slots, const SignCoder& coder, const GalleryParams& params, const float* queries,
               size_t count, TopSubjects* best, const std::vector<uint64_t>* mask, size_t searchable, size_t shards);

}  // namespace retailface
