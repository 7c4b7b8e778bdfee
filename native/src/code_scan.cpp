#include "retailface/code_scan.hpp"

#include <algorithm>
#include <random>

namespace retailface {

SignCoder::SignCoder(size_t dim) : dim_(dim) {
  std::mt19937 random(20231123);  // fixed: codes must not change across restarts
  std::normal_distribution<float> gaussian;
  projections_.resize(kCodeBits * dim_);
  for (float& value : projections_) value = gaussian(random);
}

void SignCoder::encode(const float* vector, uint64_t* code) const {
  for (size_t word = 0; word < kCodeWords; ++word) {
    uint64_t bits = 0;
    for (size_t bit = 0; bit < 64; ++bit) {
      float projection = kernels::dot(projections_.data() + (word * 64 + bit) * dim_, vector, dim_);
      bits |= static_cast<uint64_t>(projection >= 0.0f) << bit;
    }
    code[word] = bits;
  }
}

void code_scan(const Slots& slots, const SignCoder& coder, const GalleryParams& params, const float* queries,
               size_t count, TopSubjects* best, const std::vector<uint64_t>* mask, size_t searchable_count) {
  constexpr size_t kQueries = kernels::kMaxQueries;
  uint64_t query_codes[kQueries * kCodeWords];
  for (size_t q = 0; q < count; ++q) coder.encode(queries + q * params.dim, query_codes + q * kCodeWords);
  const size_t used = slots.used();
  const uint64_t* codes = slots.codes();
  auto searchable = [&](size_t slot) {
    return mask == nullptr ? slots.live(slot) : (((*mask)[slot / 64] >> (slot % 64)) & 1) != 0;
  };
  // With a filter, only allowed slots count: the same share of them is re-ranked as of a whole gallery.
  size_t wanted =
      std::min(searchable_count, std::max(params.min_candidates, searchable_count / params.candidate_divisor));
  size_t blocks = (used + kernels::kLanes - 1) / kernels::kLanes;
  auto cutoff_for = [](const uint32_t* histogram, size_t needed) {
    size_t cutoff = 0, kept = 0;
    while (cutoff <= kCodeBits && kept + histogram[cutoff] < needed) kept += histogram[cutoff++];
    return cutoff;
  };
  // A sample of whole blocks (1 in 16, so 1/16 of the memory) estimates each query's cut-off with a
  // margin; one pass then keeps every slot under it, and their histogram is the true one up to it.
  constexpr size_t kSampleEvery = 16;
  uint32_t histograms[kQueries][kCodeBits + 2] = {};
  uint16_t distances[kernels::kLanes];
  for (size_t block = 0; block < blocks; block += kSampleEvery) {
    for (size_t q = 0; q < count; ++q) {
      kernels::hamming(codes + block * kernels::kBlockWords, query_codes + q * kCodeWords, 1, distances);
      // Unfiltered, every lane counts (an estimate); filtered, only allowed ones (the mask is 0 past the used slots).
      for (size_t lane = 0; lane < kernels::kLanes; ++lane)
        if (mask == nullptr || searchable(block * kernels::kLanes + lane)) ++histograms[q][distances[lane]];
    }
  }
  uint32_t estimates[kQueries];
  for (size_t q = 0; q < count; ++q)
    estimates[q] = static_cast<uint32_t>(std::min(kCodeBits, cutoff_for(histograms[q], wanted / kSampleEvery * 2 + 8) + 2));
  // Per-thread buffers: a query must not allocate in proportion to the gallery.
  thread_local kernels::Candidates candidates[kQueries];
  for (size_t q = 0; q < count; ++q) candidates[q].clear();
  kernels::hamming_within(codes, blocks, query_codes, count, estimates, candidates);
  for (size_t q = 0; q < count; ++q) {
    auto& found = candidates[q];
    const float* query = queries + q * params.dim;
    found.erase(std::remove_if(found.begin(), found.end(), [&](const auto& candidate) { return !searchable(candidate.second); }),
                found.end());
    uint32_t* histogram = histograms[q];
    std::fill(histogram, histogram + kCodeBits + 2, 0u);
    for (const auto& candidate : found) ++histogram[candidate.first];
    size_t cutoff = cutoff_for(histogram, wanted);
    if (found.size() < wanted) {  // rare: the sample under-estimated; take the cut-off from every slot
      thread_local std::vector<uint16_t> all;
      all.resize(blocks * kernels::kLanes);
      kernels::hamming(codes, query_codes + q * kCodeWords, blocks, all.data());
      std::fill(histogram, histogram + kCodeBits + 2, 0u);
      for (size_t slot = 0; slot < used; ++slot)
        if (searchable(slot)) ++histogram[all[slot]];
      cutoff = cutoff_for(histogram, wanted);
      found.clear();
      for (size_t slot = 0; slot < used; ++slot)
        if (searchable(slot) && all[slot] <= cutoff) found.emplace_back(all[slot], static_cast<uint32_t>(slot));
    }
    found.erase(std::remove_if(found.begin(), found.end(), [&](const auto& candidate) { return candidate.first > cutoff; }),
                found.end());
    // The re-rank reads scattered rows: fetch a few ahead so their cache misses overlap.
    constexpr size_t kAhead = 4;
    auto prefetch = [&](size_t slot) {
      const char* row = reinterpret_cast<const char*>(slots.vector_of(slot));
      for (size_t offset = 0; offset < params.dim * sizeof(float); offset += 64) __builtin_prefetch(row + offset);
    };
    for (size_t i = 0; i < std::min(kAhead, found.size()); ++i) prefetch(found[i].second);
    for (size_t i = 0; i < found.size(); ++i) {
      if (i + kAhead < found.size()) prefetch(found[i + kAhead].second);
      uint32_t slot = found[i].second;
      best[q].offer(slots.subject_of(slot), slots.template_of(slot), slots.similarity(slot, query));
    }
  }
}

}  // namespace retailface
