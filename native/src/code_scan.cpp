#include "retailface/code_scan.hpp"

#include <algorithm>
#include <random>

#include "retailface/parallel.hpp"

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

namespace {

// The smallest distance at or below which at least `needed` of the histogram's slots lie (kCodeBits + 1: all).
size_t cutoff_for(const uint32_t* histogram, size_t needed) {
  size_t cutoff = 0, kept = 0;
  while (cutoff <= kCodeBits && kept + histogram[cutoff] < needed) kept += histogram[cutoff++];
  return cutoff;
}

// Scores [begin, end) on their stored rows into `top`. The rows are scattered: fetch a few ahead so their cache
// misses overlap. Ids (and liveness) are read only for a score that can enter the best subjects.
void rerank(const Slots& slots, const float* query, size_t dim, const std::pair<uint16_t, uint32_t>* begin,
            const std::pair<uint16_t, uint32_t>* end, TopSubjects& top) {
  constexpr ptrdiff_t kAhead = 12;
  auto prefetch = [&](size_t slot) {
    const char* row = reinterpret_cast<const char*>(slots.row_of(slot));
    for (size_t offset = 0; offset < dim; offset += 64) __builtin_prefetch(row + offset);
    __builtin_prefetch(&slots.scales()[slot]);
  };
  for (const auto* at = begin; at < end && at < begin + kAhead; ++at) prefetch(at->second);
  for (const auto* at = begin; at < end; ++at) {
    if (end - at > kAhead) prefetch(at[kAhead].second);
    uint32_t slot = at->second;
    float score = slots.similarity(slot, query);
    if (score >= top.floor() && slots.live(slot)) top.offer(slots.subject_of(slot), slots.template_of(slot), score);
  }
}

}  // namespace

void code_scan(const Slots& slots, const SignCoder& coder, const GalleryParams& params, const float* queries,
               size_t count, TopSubjects* best, const std::vector<uint64_t>* mask, size_t searchable_count,
               size_t shards) {
  constexpr size_t kQueries = kernels::kMaxQueries;
  constexpr size_t kLanes = kernels::kLanes, kHalf = kernels::kHalfBlockWords;
  uint64_t query_codes[kQueries * kCodeWords];
  for (size_t q = 0; q < count; ++q) coder.encode(queries + q * params.dim, query_codes + q * kCodeWords);
  const size_t used = slots.used();
  const uint64_t *first = slots.first_codes(), *second = slots.second_codes();
  auto searchable = [&](size_t slot) {
    return mask == nullptr ? slots.live(slot) : (((*mask)[slot / 64] >> (slot % 64)) & 1) != 0;
  };
  // With a filter, only allowed slots count: the same share of them is re-ranked as of a whole gallery.
  size_t wanted =
      std::min(searchable_count, std::max(params.min_candidates, searchable_count / params.candidate_divisor));
  // The first pass lets through the slots nearest in their first halves, first_pass_divisor times more of them
  // than are re-ranked (and at least 1/first_pass_share of the searchable ones).
  size_t first_wanted = std::min(searchable_count, std::max(wanted * params.first_pass_divisor,
                                                            searchable_count / std::max<size_t>(params.first_pass_share, 1)));
  size_t blocks = (used + kLanes - 1) / kLanes;
  // Two passes when the first halves let few enough through: the first streams the first halves alone, the
  // second reads the other halves of those it kept. Otherwise one pass reads both.
  const bool two_passes = first_wanted * 8 <= searchable_count;
  // A sample of about kSampleSlots slots (runs of kRun contiguous blocks, so that each streams, spread evenly
  // over the gallery: one run in `every`) estimates each query's cut-off with a margin; one pass then keeps every
  // slot under it, and their histogram is the true one up to the cut-off. A fixed sample, not a fixed share: its
  // cost must not grow with the gallery (a 1-in-16 sample was a tenth of a 10M search).
  constexpr size_t kRun = 64, kSampleSlots = 16384;
  const size_t every = std::max<size_t>(1, blocks * kLanes / kSampleSlots);
  uint32_t histograms[kQueries][kCodeBits + 2] = {};  // of whole distances (one pass) or first halves (two)
  thread_local std::vector<uint16_t> near_buffer, far_buffer;
  auto& near = near_buffer;
  auto& far = far_buffer;
  near.resize(kRun * kLanes);
  far.resize(kRun * kLanes);
  for (size_t start = 0; start < blocks; start += kRun * every) {
    size_t run = std::min(kRun, blocks - start);
    for (size_t q = 0; q < count; ++q) {
      kernels::hamming_first(first + start * kHalf, query_codes + q * kCodeWords, run, near.data());
      if (!two_passes) {
        kernels::hamming_second(second + start * kHalf, query_codes + q * kCodeWords + kernels::kHalfWords, run, far.data());
        for (size_t i = 0; i < run * kLanes; ++i) near[i] = static_cast<uint16_t>(near[i] + far[i]);
      }
      // Unfiltered, every lane counts (an estimate); filtered, only allowed ones (the mask is 0 past the used slots).
      for (size_t i = 0; i < run * kLanes; ++i)
        if (mask == nullptr || searchable(start * kLanes + i)) ++histograms[q][near[i]];
    }
  }
  // One pass keeps whole distances up to limits[q]; two keep first halves up to first_limits[q] (and every one
  // of those goes on to the second pass).
  uint32_t limits[kQueries], first_limits[kQueries];
  for (size_t q = 0; q < count; ++q) {
    if (two_passes) {
      limits[q] = static_cast<uint32_t>(kCodeBits);
      first_limits[q] = static_cast<uint32_t>(cutoff_for(histograms[q], first_wanted / every + 8) + 1);
    } else {
      limits[q] = static_cast<uint32_t>(std::min(kCodeBits, cutoff_for(histograms[q], wanted / every * 2 + 8) + 2));
      first_limits[q] = static_cast<uint32_t>(kCodeBits);
    }
  }
  // Per-thread buffers: a query must not allocate in proportion to the gallery. A large single search is
  // split into `shards` ranges of blocks scanned on as many threads, then merged.
  thread_local kernels::Candidates candidates[kQueries];
  for (size_t q = 0; q < count; ++q) candidates[q].clear();
  const uint64_t* pass_second = two_passes ? nullptr : second;
  auto finish = [&](kernels::Candidates* found, size_t q) {  // the second pass over one query's survivors
    if (!two_passes) return;
    auto& list = found[q];
    const uint64_t* tail = query_codes + q * kCodeWords + kernels::kHalfWords;
    constexpr size_t kAhead = 16;
    auto fetch = [&](uint32_t slot) { __builtin_prefetch(second + slot * kernels::kHalfWords); };
    for (size_t i = 0; i < std::min(kAhead, list.size()); ++i) fetch(list[i].second);
    size_t kept = 0;
    for (size_t i = 0; i < list.size(); ++i) {
      if (i + kAhead < list.size()) fetch(list[i + kAhead].second);
      uint32_t slot = list[i].second;
      uint32_t distance = list[i].first + kernels::second_distance(second, slot, tail);
      list[kept++] = {static_cast<uint16_t>(distance), slot};  // all of them: the cut-off comes from their histogram
    }
    list.resize(kept);
  };
  shards = std::max<size_t>(1, std::min(shards, blocks / 16384));  // a shard of at least 128k slots
  if (shards == 1) {
    kernels::hamming_within(first, pass_second, 0, blocks, query_codes, count, first_limits, limits, candidates);
    for (size_t q = 0; q < count; ++q) finish(candidates, q);
  } else {
    std::vector<std::vector<kernels::Candidates>> parts(shards, std::vector<kernels::Candidates>(count));
    parallel_for(shards, shards, [&](size_t shard) {
      size_t begin = blocks * shard / shards, end = blocks * (shard + 1) / shards;
      kernels::hamming_within(first, pass_second, begin, end, query_codes, count, first_limits, limits, parts[shard].data());
      for (size_t q = 0; q < count; ++q) finish(parts[shard].data(), q);
    });
    for (size_t q = 0; q < count; ++q)
      for (auto& part : parts) candidates[q].insert(candidates[q].end(), part[q].begin(), part[q].end());
  }
  for (size_t q = 0; q < count; ++q) {
    auto& found = candidates[q];
    const float* query = queries + q * params.dim;
    // A filter's mask is small enough to stay in cache: drop what it does not allow now. Unfiltered, a free slot's
    // code is all zeros (about half the bits away from any query) and its liveness is checked only for a score
    // that could enter the best: one random read less per candidate.
    if (mask != nullptr)
      found.erase(std::remove_if(found.begin(), found.end(), [&](const auto& candidate) { return !searchable(candidate.second); }),
                  found.end());
    uint32_t* histogram = histograms[q];
    std::fill(histogram, histogram + kCodeBits + 2, 0u);
    for (const auto& candidate : found) ++histogram[candidate.first];
    size_t cutoff = cutoff_for(histogram, wanted);
    if (found.size() < wanted) {  // rare: the sample under-estimated; take the cut-off from every slot
      thread_local std::vector<uint16_t> all, tail;
      all.resize(blocks * kLanes);
      tail.resize(blocks * kLanes);
      kernels::hamming_first(first, query_codes + q * kCodeWords, blocks, all.data());
      kernels::hamming_second(second, query_codes + q * kCodeWords + kernels::kHalfWords, blocks, tail.data());
      std::fill(histogram, histogram + kCodeBits + 2, 0u);
      for (size_t slot = 0; slot < used; ++slot) {
        all[slot] = static_cast<uint16_t>(all[slot] + tail[slot]);
        if (searchable(slot)) ++histogram[all[slot]];
      }
      cutoff = cutoff_for(histogram, wanted);
      found.clear();
      for (size_t slot = 0; slot < used; ++slot)
        if (searchable(slot) && all[slot] <= cutoff) found.emplace_back(all[slot], static_cast<uint32_t>(slot));
    }
    found.erase(std::remove_if(found.begin(), found.end(), [&](const auto& candidate) { return candidate.first > cutoff; }),
                found.end());
    // The re-rank reads scattered rows (latency, not bandwidth): a split search re-ranks on every shard's thread.
    if (shards == 1 || found.size() < 4096) {
      rerank(slots, query, params.dim, found.data(), found.data() + found.size(), best[q]);
      continue;
    }
    std::vector<TopSubjects> partial(shards, TopSubjects(best[q].capacity()));
    parallel_for(shards, shards, [&](size_t shard) {
      size_t begin = found.size() * shard / shards, end = found.size() * (shard + 1) / shards;
      rerank(slots, query, params.dim, found.data() + begin, found.data() + end, partial[shard]);
    });
    for (const auto& part : partial)
      for (const auto& entry : part.entries()) best[q].offer(entry.subject, entry.template_id, entry.score);
  }
}

}  // namespace retailface
