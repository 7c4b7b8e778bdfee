#include "retailface/gallery.hpp"

#include <atomic>
#include <cstring>
#include <exception>
#include <limits>
#include <random>

namespace retailface {

namespace {

constexpr size_t kMaxFilters = 8;

// Filter inside hnswlib's graph walk: only templates of allowed subjects are returned.
class SubjectFilter : public hnswlib::BaseFilterFunctor {
 public:
  SubjectFilter(const std::vector<int64_t>& slot_subject, const std::unordered_set<int64_t>& allowed)
      : slot_subject_(slot_subject), allowed_(allowed) {}
  bool operator()(hnswlib::labeltype label) override { return allowed_.count(slot_subject_[label]) != 0; }

 private:
  const std::vector<int64_t>& slot_subject_;
  const std::unordered_set<int64_t>& allowed_;
};

// Symmetric int8 rounding of one vector: out = round(v / scale) with scale = max|v| / 127.
struct Rounded {
  float scale = 1.f;
  float error = 0.f;  // |v - scale * out|
  float norm = 0.f;   // |v|
  float rounded_norm = 0.f;  // |scale * out|
};

Rounded round_to_int8(const float* vector, size_t dim, int8_t* out) {
  Rounded rounded;
  float largest = 0.f;
  for (size_t i = 0; i < dim; ++i) largest = std::max(largest, std::fabs(vector[i]));
  if (largest > 0.f) rounded.scale = largest / 127.f;
  double error = 0, norm = 0, rounded_norm = 0;
  for (size_t i = 0; i < dim; ++i) {
    float value = std::nearbyint(vector[i] / rounded.scale);
    value = std::clamp(value, -127.f, 127.f);
    out[i] = static_cast<int8_t>(value);
    double restored = static_cast<double>(value) * rounded.scale;
    error += (vector[i] - restored) * (vector[i] - restored);
    norm += static_cast<double>(vector[i]) * vector[i];
    rounded_norm += restored * restored;
  }
  rounded.error = static_cast<float>(std::sqrt(error));
  rounded.norm = static_cast<float>(std::sqrt(norm));
  rounded.rounded_norm = static_cast<float>(std::sqrt(rounded_norm));
  return rounded;
}

}  // namespace

class Gallery::TopSubjects {
 public:
  struct Entry {
    int64_t subject;
    int64_t template_id;
    float score;
  };

  explicit TopSubjects(size_t capacity) : capacity_(capacity) { entries_.reserve(capacity + 1); }

  // O(capacity) per template that beats the current floor, one comparison otherwise. A subject pushed
  // out by `capacity` better subjects can never be among the best, so forgetting it loses nothing.
  void offer(int64_t subject, int64_t template_id, float score) {
    if (entries_.size() == capacity_ && !better(score, subject, entries_.back())) return;
    size_t at = entries_.size();
    for (size_t i = 0; i < entries_.size(); ++i) {
      if (entries_[i].subject == subject) {
        if (!(score > entries_[i].score)) return;
        at = i;
        break;
      }
    }
    if (at == entries_.size()) {
      if (entries_.size() == capacity_) at = capacity_ - 1;
      else entries_.push_back({});
    }
    entries_[at] = {subject, template_id, score};
    while (at > 0 && better(entries_[at].score, entries_[at].subject, entries_[at - 1])) {
      std::swap(entries_[at], entries_[at - 1]);
      --at;
    }
  }

  const std::vector<Entry>& entries() const { return entries_; }
  size_t capacity() const { return capacity_; }
  // The score every one of the `capacity` best subjects is sure to reach (-inf until there are that many).
  float floor() const {
    return entries_.size() == capacity_ ? entries_.back().score : -std::numeric_limits<float>::infinity();
  }

 private:
  static bool better(float score, int64_t subject, const Entry& other) {
    return score > other.score || (score == other.score && subject < other.subject);
  }
  size_t capacity_;
  std::vector<Entry> entries_;
};

Gallery::Gallery(const GalleryParams& params) : params_(params), space_(params.dim) {
  if (params_.dim == 0) throw std::invalid_argument("dim must be positive");
  params_.capacity = std::max<size_t>(params_.capacity, 16);
  params_.capacity = (params_.capacity + kernels::kLanes - 1) / kernels::kLanes * kernels::kLanes;
  params_.threads = std::max<size_t>(params_.threads, 1);
  index_ = std::make_unique<hnswlib::HierarchicalNSW<float>>(&space_, params_.capacity, params_.M,
                                                              params_.ef_construction, 100, false);
  index_->setEf(params_.ef_search);
  std::mt19937 random(20231123);  // fixed: codes must not change across restarts
  std::normal_distribution<float> gaussian;
  projections_.resize(kCodeBits * params_.dim);
  for (float& value : projections_) value = gaussian(random);
  codes_.resize(params_.capacity * kCodeWords);
  slot_internal_.resize(params_.capacity, 0);
  slot_template_.resize(params_.capacity, -1);
  slot_subject_.resize(params_.capacity, -1);
  live_.resize(params_.capacity, 0);
}

void Gallery::ensure_capacity(size_t needed) {
  if (needed <= params_.capacity) return;
  if (needed > std::numeric_limits<uint32_t>::max()) throw std::length_error("gallery capacity is limited to 2^32 slots");
  size_t capacity = params_.capacity;
  while (capacity < needed) capacity *= 2;
  index_->resizeIndex(capacity);
  codes_.resize(capacity * kCodeWords);
  slot_internal_.resize(capacity, 0);
  slot_template_.resize(capacity, -1);
  slot_subject_.resize(capacity, -1);
  live_.resize(capacity, 0);
  params_.capacity = capacity;
}

template <typename Work>
void Gallery::parallel_for(size_t count, Work&& work) const {
  size_t workers = std::min(params_.threads, count);
  if (workers <= 1) {
    for (size_t i = 0; i < count; ++i) work(i);
    return;
  }
  std::atomic<size_t> next{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  auto worker = [&] {
    try {
      for (size_t i = next++; i < count; i = next++) work(i);
    } catch (...) {
      std::lock_guard guard(failure_mutex);
      if (!failure) failure = std::current_exception();
      next = count;
    }
  };
  std::vector<std::thread> pool;
  for (size_t w = 1; w < workers; ++w) pool.emplace_back(worker);
  worker();  // the calling thread is one of the workers
  for (auto& thread : pool) thread.join();
  if (failure) std::rethrow_exception(failure);
}

void Gallery::add(const int64_t* template_ids, const int64_t* subject_ids, const float* vectors, size_t n) {
  std::unique_lock lock(mutex_);
  ++version_;
  // Book-keeping first, serially; then codes and graph inserts for the new slots on every thread.
  size_t fresh = n > free_slots_.size() ? n - free_slots_.size() : 0;
  ensure_capacity(used_slots_ + fresh);
  std::vector<std::pair<size_t, size_t>> inserted;  // (slot, input row) handed out by this call, each slot once
  std::unordered_map<size_t, size_t> in_this_call;   // slot -> its entry in `inserted`
  inserted.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    size_t slot;
    auto existing = template_slot_.find(template_ids[i]);
    if (existing != template_slot_.end() && in_this_call.count(existing->second)) {
      // The same template id twice in one call: the later row wins, in the slot not yet in the graph.
      slot = existing->second;
      inserted[in_this_call[slot]].second = i;
      auto& old_slots = subject_slots_[slot_subject_[slot]];
      old_slots.erase(std::remove(old_slots.begin(), old_slots.end(), slot), old_slots.end());
      if (old_slots.empty()) subject_slots_.erase(slot_subject_[slot]);
    } else {
      if (existing != template_slot_.end()) remove_slot(existing->second);
      if (!free_slots_.empty()) {
        slot = free_slots_.back();
        free_slots_.pop_back();
      } else {
        ensure_capacity(used_slots_ + 1);
        slot = used_slots_++;
      }
      in_this_call[slot] = inserted.size();
      inserted.emplace_back(slot, i);
    }
    slot_template_[slot] = template_ids[i];
    slot_subject_[slot] = subject_ids[i];
    live_[slot] = 1;
    template_slot_[template_ids[i]] = slot;
    subject_slots_[subject_ids[i]].push_back(slot);
  }
  parallel_for(inserted.size(), [&](size_t i) {
    auto [slot, row] = inserted[i];
    const float* vector = vectors + row * params_.dim;
    uint64_t code[kCodeWords];
    encode(vector, code);
    store_code(slot, code);
    // A reused slot's label is marked deleted in the graph: addPoint un-deletes it and updates its
    // vector in place (same internal id). The label lock is what hnswlib's own addPoint takes.
    std::unique_lock label_lock(index_->getLabelOpMutex(slot));
    slot_internal_[slot] = index_->addPoint(vector, slot, -1);
  });
}

void Gallery::remove_slot(size_t slot) {
  if (!live_[slot]) return;
  live_[slot] = 0;
  index_->markDelete(slot);
  // Erasure leaves nothing of the face in memory: the deleted node keeps guiding graph walks until its
  // slot is reused, so its vector becomes a random unit vector (unrelated to anyone) and its code zeros.
  std::mt19937 random(static_cast<uint32_t>(slot) ^ 0x5eed1234u);
  std::normal_distribution<float> gaussian;
  float* vector = reinterpret_cast<float*>(index_->getDataByInternalId(slot_internal_[slot]));
  float norm = 0.f;
  for (size_t i = 0; i < params_.dim; ++i) {
    vector[i] = gaussian(random);
    norm += vector[i] * vector[i];
  }
  for (size_t i = 0; i < params_.dim; ++i) vector[i] /= std::sqrt(norm);
  uint64_t zeros[kCodeWords] = {};
  store_code(slot, zeros);
  template_slot_.erase(slot_template_[slot]);
  auto subject = subject_slots_.find(slot_subject_[slot]);
  if (subject != subject_slots_.end()) {
    auto& slots = subject->second;
    slots.erase(std::remove(slots.begin(), slots.end(), slot), slots.end());
    if (slots.empty()) subject_slots_.erase(subject);
  }
  slot_template_[slot] = -1;
  slot_subject_[slot] = -1;
  free_slots_.push_back(slot);
}

size_t Gallery::remove(const int64_t* template_ids, size_t n) {
  std::unique_lock lock(mutex_);
  ++version_;
  size_t removed = 0;
  for (size_t i = 0; i < n; ++i) {
    auto found = template_slot_.find(template_ids[i]);
    if (found == template_slot_.end()) continue;
    remove_slot(found->second);
    ++removed;
  }
  return removed;
}

size_t Gallery::remove_subject(int64_t subject_id) {
  std::unique_lock lock(mutex_);
  ++version_;
  auto found = subject_slots_.find(subject_id);
  if (found == subject_slots_.end()) return 0;
  std::vector<size_t> slots = found->second;
  for (size_t slot : slots) remove_slot(slot);
  return slots.size();
}

void Gallery::encode(const float* vector, uint64_t* code) const {
  for (size_t word = 0; word < kCodeWords; ++word) {
    uint64_t bits = 0;
    for (size_t bit = 0; bit < 64; ++bit) {
      float projection = kernels::dot(projections_.data() + (word * 64 + bit) * params_.dim, vector, params_.dim);
      bits |= static_cast<uint64_t>(projection >= 0.0f) << bit;
    }
    code[word] = bits;
  }
}

void Gallery::store_code(size_t slot, const uint64_t* code) {
  uint64_t* block = codes_.data() + slot / kernels::kLanes * kernels::kBlockWords;
  for (size_t word = 0; word < kCodeWords; ++word) block[word * kernels::kLanes + slot % kernels::kLanes] = code[word];
}

void Gallery::code_scan(const float* queries, size_t count, TopSubjects* best, const FilterEntry* filter) const {
  constexpr size_t kQueries = kernels::kMaxQueries;
  uint64_t query_codes[kQueries * kCodeWords];
  for (size_t q = 0; q < count; ++q) encode(queries + q * params_.dim, query_codes + q * kCodeWords);
  // With a filter, only allowed slots count: the same share of them is re-ranked as of a whole gallery.
  const std::vector<uint64_t>* mask = filter != nullptr ? &filter->mask : nullptr;
  auto searchable = [&](size_t slot) {
    return mask == nullptr ? live_[slot] != 0 : (((*mask)[slot / 64] >> (slot % 64)) & 1) != 0;
  };
  size_t live = filter != nullptr ? filter->slots.size() : used_slots_ - free_slots_.size();
  size_t wanted = std::min(live, std::max(params_.min_candidates, live / params_.candidate_divisor));
  size_t blocks = (used_slots_ + kernels::kLanes - 1) / kernels::kLanes;
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
      kernels::hamming(codes_.data() + block * kernels::kBlockWords, query_codes + q * kCodeWords, 1, distances);
      // Unfiltered, every lane counts (an estimate); filtered, only allowed ones (the mask is 0 past used_slots_).
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
  kernels::hamming_within(codes_.data(), blocks, query_codes, count, estimates, candidates);
  for (size_t q = 0; q < count; ++q) {
    auto& found = candidates[q];
    const float* query = queries + q * params_.dim;
    found.erase(std::remove_if(found.begin(), found.end(), [&](const auto& candidate) { return !searchable(candidate.second); }),
                found.end());
    uint32_t* histogram = histograms[q];
    std::fill(histogram, histogram + kCodeBits + 2, 0u);
    for (const auto& candidate : found) ++histogram[candidate.first];
    size_t cutoff = cutoff_for(histogram, wanted);
    if (found.size() < wanted) {  // rare: the sample under-estimated; take the cut-off from every slot
      thread_local std::vector<uint16_t> all;
      all.resize(blocks * kernels::kLanes);
      kernels::hamming(codes_.data(), query_codes + q * kCodeWords, blocks, all.data());
      std::fill(histogram, histogram + kCodeBits + 2, 0u);
      for (size_t slot = 0; slot < used_slots_; ++slot)
        if (searchable(slot)) ++histogram[all[slot]];
      cutoff = cutoff_for(histogram, wanted);
      found.clear();
      for (size_t slot = 0; slot < used_slots_; ++slot)
        if (searchable(slot) && all[slot] <= cutoff) found.emplace_back(all[slot], static_cast<uint32_t>(slot));
    }
    found.erase(std::remove_if(found.begin(), found.end(), [&](const auto& candidate) { return candidate.first > cutoff; }),
                found.end());
    // The re-rank reads scattered rows: fetch a few ahead so their cache misses overlap.
    constexpr size_t kAhead = 4;
    auto prefetch = [&](size_t slot) {
      const char* row = reinterpret_cast<const char*>(vector_of(slot));
      for (size_t offset = 0; offset < params_.dim * sizeof(float); offset += 64) __builtin_prefetch(row + offset);
    };
    for (size_t i = 0; i < std::min(kAhead, found.size()); ++i) prefetch(found[i].second);
    for (size_t i = 0; i < found.size(); ++i) {
      if (i + kAhead < found.size()) prefetch(found[i + kAhead].second);
      uint32_t slot = found[i].second;
      best[q].offer(slot_subject_[slot], slot_template_[slot], similarity(slot, query));
    }
  }
}

std::shared_ptr<const Gallery::FilterEntry> Gallery::filter_for(const int64_t* allowed, size_t allowed_count) const {
  // Called under the shared lock, so version_ and the slot tables are stable here.
  {
    std::lock_guard guard(filter_mutex_);
    for (size_t i = 0; i < filters_.size(); ++i) {
      const auto& entry = filters_[i];
      if (entry->version == version_ && entry->allowed.size() == allowed_count &&
          std::memcmp(entry->allowed.data(), allowed, allowed_count * sizeof(int64_t)) == 0) {
        auto hit = entry;
        std::rotate(filters_.begin(), filters_.begin() + static_cast<std::ptrdiff_t>(i),
                    filters_.begin() + static_cast<std::ptrdiff_t>(i) + 1);
        return hit;
      }
    }
  }
  auto entry = std::make_shared<FilterEntry>();
  entry->version = version_;
  entry->allowed.assign(allowed, allowed + allowed_count);
  entry->subjects.insert(allowed, allowed + allowed_count);
  for (int64_t subject : entry->subjects) {
    auto found = subject_slots_.find(subject);
    if (found == subject_slots_.end()) continue;
    for (size_t slot : found->second) entry->slots.push_back(static_cast<uint32_t>(slot));
  }
  std::sort(entry->slots.begin(), entry->slots.end());  // memory order: a forward scan
  entry->plan = choose_plan(entry.get());
  if (entry->plan == Plan::kFilteredCodeScan) {
    entry->mask.assign((used_slots_ + 63) / 64, 0);
    for (uint32_t slot : entry->slots) entry->mask[slot / 64] |= uint64_t{1} << (slot % 64);
  }
  if (entry->plan == Plan::kFilteredScan) {
    size_t dim = params_.dim, count = entry->slots.size();
    entry->quantized.resize(count * dim);
    entry->scales.resize(count);
    entry->errors.resize(count);
    entry->norms.resize(count);
    entry->slot_subjects.resize(count);
    for (size_t i = 0; i < count; ++i) {
      uint32_t slot = entry->slots[i];
      Rounded rounded = round_to_int8(vector_of(slot), dim, entry->quantized.data() + i * dim);
      entry->scales[i] = rounded.scale;
      entry->errors[i] = rounded.error;
      entry->norms[i] = rounded.norm;
      entry->slot_subjects[i] = slot_subject_[slot];
    }
  }
  std::lock_guard guard(filter_mutex_);
  filters_.erase(std::remove_if(filters_.begin(), filters_.end(),
                                [&](const auto& cached) { return cached->version != version_; }),
                 filters_.end());
  filters_.insert(filters_.begin(), entry);
  if (filters_.size() > kMaxFilters) filters_.pop_back();
  return entry;
}

Plan Gallery::choose_plan(const FilterEntry* filter) const {
  size_t live = used_slots_ - free_slots_.size();
  if (live == 0 || (filter != nullptr && filter->slots.empty())) return Plan::kEmpty;
  if (filter != nullptr) {
    size_t allowed = filter->slots.size();
    if (allowed <= params_.filtered_scan_below || live <= params_.exact_below) return Plan::kFilteredScan;
    if (params_.graph_for_global) {
      // A filtered graph walk visits about ef * M / selectivity nodes before it has ef allowed ones; an exact
      // scan visits the allowed templates once. Scan while allowed^2 <= ef * M * live (32k templates of 1M).
      double wide = static_cast<double>(allowed);
      return wide * wide <= static_cast<double>(params_.ef_search * params_.M) * static_cast<double>(live) ? Plan::kFilteredScan
                                                                                                          : Plan::kFilteredGraph;
    }
    // Exact while it is about as cheap as the code scan (params_.filtered_scan_share); wider, the code scan.
    return allowed * params_.filtered_scan_share <= live ? Plan::kFilteredScan : Plan::kFilteredCodeScan;
  }
  if (live <= params_.exact_below) return Plan::kExactScan;
  return params_.graph_for_global ? Plan::kGraph : Plan::kCodeScan;
}

size_t Gallery::FilterEntry::bytes() const {
  return sizeof(FilterEntry) + allowed.size() * sizeof(int64_t) + slots.size() * sizeof(uint32_t) + subjects.size() * 32 +
         quantized.size() + (scales.size() + errors.size() + norms.size()) * sizeof(float) +
         slot_subjects.size() * sizeof(int64_t) + mask.size() * sizeof(uint64_t);
}

void Gallery::filtered_scan(const float* query, const FilterEntry& filter, TopSubjects& best) const {
  // u.v = q.t + q.(v - t) + (u - q).v for the rounded query q and template t, so
  // |u.v - q.t| <= |q| |v - t| + |u - q| |v|: q.t comes from the int8 scan, and the bound says which
  // templates could still be among the best. Only those are scored in float.
  size_t dim = params_.dim, count = filter.slots.size();
  // Per-thread buffers, bound once: each access to a thread_local costs a TLS lookup.
  thread_local std::vector<int8_t> rounded_buffer;
  thread_local std::vector<int32_t> dot_buffer;
  thread_local std::vector<float> lower_buffer, upper_buffer;
  auto& rounded_query = rounded_buffer;
  auto& dots = dot_buffer;
  auto& lower = lower_buffer;
  auto& upper = upper_buffer;
  rounded_query.resize(dim);
  dots.resize(count);
  lower.resize(count);
  upper.resize(count);
  Rounded q = round_to_int8(query, dim, rounded_query.data());
  kernels::dots_i8(filter.quantized.data(), count, dim, rounded_query.data(), dots.data());
  // Float rounding of the scores themselves (1e-6 at most here) is covered many times over.
  constexpr float kFloatSlack = 1e-4f;
  const float *scales = filter.scales.data(), *errors = filter.errors.data(), *norms = filter.norms.data();
  for (size_t i = 0; i < count; ++i) {  // branch-free: the compiler vectorises it
    float approx = q.scale * scales[i] * static_cast<float>(dots[i]);
    float slack = q.rounded_norm * errors[i] + q.error * norms[i] + kFloatSlack;
    lower[i] = approx - slack;
    upper[i] = approx + slack;
  }
  // The best subjects by the score each is sure to reach. Skipping a template that only ties the floor
  // can only lower the floor, which keeps the result exact.
  TopSubjects sure(best.capacity());
  float floor = sure.floor();
  for (size_t i = 0; i < count; ++i) {
    if (lower[i] > floor) {
      sure.offer(filter.slot_subjects[i], 0, lower[i]);
      floor = sure.floor();
    }
  }
  for (size_t i = 0; i < count; ++i) {
    if (upper[i] < floor) continue;  // certainly below `capacity` other subjects
    uint32_t slot = filter.slots[i];
    best.offer(filter.slot_subjects[i], slot_template_[slot], similarity(slot, query));
  }
}

void Gallery::collect(Plan plan, const float* query, size_t top_k, const FilterEntry* filter, TopSubjects& best) const {
  switch (plan) {
    case Plan::kEmpty:
      return;
    case Plan::kFilteredScan:
      filtered_scan(query, *filter, best);
      return;
    case Plan::kExactScan:
      for (size_t slot = 0; slot < used_slots_; ++slot)
        if (live_[slot]) best.offer(slot_subject_[slot], slot_template_[slot], similarity(slot, query));
      return;
    case Plan::kCodeScan:
    case Plan::kFilteredCodeScan:
      code_scan(query, 1, &best, filter);
      return;
    case Plan::kGraph:
    case Plan::kFilteredGraph: {
      // Several templates per subject: ask the graph for more templates than subjects wanted.
      size_t k = std::min(used_slots_ - free_slots_.size(), std::max<size_t>(top_k * 8, 32));
      std::unique_ptr<SubjectFilter> graph_filter;
      if (filter != nullptr) graph_filter = std::make_unique<SubjectFilter>(slot_subject_, filter->subjects);
      auto found = index_->searchKnnCloserFirst(query, k, graph_filter.get());
      for (const auto& [distance, label] : found) best.offer(slot_subject_[label], slot_template_[label], 1.0f - distance);
      return;
    }
  }
}

void Gallery::report(const TopSubjects& best, Plan plan, float threshold, float margin, SearchOutput& out, size_t row) {
  const auto& ranked = best.entries();
  size_t keep = std::min(out.top_k, ranked.size());
  for (size_t i = 0; i < keep; ++i) {
    out.subjects[row * out.top_k + i] = ranked[i].subject;
    out.template_ids[row * out.top_k + i] = ranked[i].template_id;
    out.scores[row * out.top_k + i] = ranked[i].score;
  }
  Decision decision = Decision::kNoMatch;
  if (!ranked.empty() && ranked[0].score >= threshold) {
    float second = ranked.size() > 1 ? ranked[1].score : -2.f;
    decision = ranked[0].score - second >= margin ? Decision::kMatch : Decision::kAmbiguous;
  }
  out.decisions[row] = static_cast<int8_t>(decision);
  out.plans[row] = static_cast<int8_t>(plan);
}

SearchOutput Gallery::search(const float* queries, size_t n, size_t top_k, float threshold, float margin,
                             const int64_t* allowed, size_t allowed_count) const {
  if (top_k == 0) throw std::invalid_argument("top_k must be positive");
  SearchOutput out;
  out.n = n;
  out.top_k = top_k;
  out.subjects.assign(n * top_k, -1);
  out.template_ids.assign(n * top_k, -1);
  out.scores.assign(n * top_k, 0.f);
  out.decisions.assign(n, static_cast<int8_t>(Decision::kNoMatch));
  out.plans.assign(n, static_cast<int8_t>(Plan::kEmpty));

  std::shared_lock lock(mutex_);
  std::shared_ptr<const FilterEntry> filter;
  if (allowed != nullptr) filter = filter_for(allowed, allowed_count);
  Plan plan = filter ? filter->plan : choose_plan(nullptr);
  // Queries go in groups (of up to kMaxQueries for the code scan, which reads the codes once per group);
  // groups are shared out to the workers as they finish.
  bool grouped = plan == Plan::kCodeScan || plan == Plan::kFilteredCodeScan;
  size_t group = grouped ? kernels::kMaxQueries : 1;
  size_t groups = (n + group - 1) / group;
  parallel_for(groups, [&](size_t g) {
    size_t begin = g * group, end = std::min(n, begin + group);
    // Two subjects at least: the decision looks at the runner-up even when top_k is 1.
    std::vector<TopSubjects> best(end - begin, TopSubjects(std::max<size_t>(top_k, 2)));
    if (grouped) {
      code_scan(queries + begin * params_.dim, end - begin, best.data(), filter.get());
    } else {
      for (size_t row = begin; row < end; ++row) collect(plan, queries + row * params_.dim, top_k, filter.get(), best[row - begin]);
    }
    for (size_t row = begin; row < end; ++row) report(best[row - begin], plan, threshold, margin, out, row);
  });
  return out;
}

size_t Gallery::size() const {
  std::shared_lock lock(mutex_);
  return used_slots_ - free_slots_.size();
}

size_t Gallery::subject_count() const {
  std::shared_lock lock(mutex_);
  return subject_slots_.size();
}

size_t Gallery::memory_bytes() const {
  std::shared_lock lock(mutex_);
  // hnswlib: level-0 block (vector, links, label), a lock, level and upper-link pointer per element; upper
  // levels (about 1 element in M has them); its label map; its fixed pool of per-label locks.
  size_t graph = index_->max_elements_ * (index_->size_data_per_element_ + sizeof(std::mutex) + sizeof(int) + sizeof(void*)) +
                 index_->cur_element_count * index_->size_links_per_element_ / std::max<size_t>(index_->M_, 1) +
                 index_->label_lookup_.size() * 40 + index_->label_op_locks_.size() * sizeof(std::mutex);
  size_t cached_filters = 0;
  {
    std::lock_guard guard(filter_mutex_);
    for (const auto& entry : filters_) cached_filters += entry->bytes();
  }
  return graph + cached_filters + codes_.size() * sizeof(uint64_t) +
         params_.capacity * (2 * sizeof(int64_t) + sizeof(hnswlib::tableint) + 1) + template_slot_.size() * 32 +
         subject_slots_.size() * 48;
}

GalleryParams Gallery::params() const {
  std::shared_lock lock(mutex_);
  return params_;
}

void Gallery::set_threads(size_t threads) {
  std::unique_lock lock(mutex_);
  params_.threads = std::max<size_t>(threads, 1);
}

void Gallery::set_ef(size_t ef) {
  std::unique_lock lock(mutex_);
  params_.ef_search = ef;
  index_->setEf(ef);
  ++version_;  // a cached filter's plan depends on ef
}

void Gallery::set_candidates(size_t min_candidates, size_t candidate_divisor) {
  std::unique_lock lock(mutex_);
  params_.min_candidates = std::max<size_t>(min_candidates, 1);
  params_.candidate_divisor = std::max<size_t>(candidate_divisor, 1);
}

void Gallery::set_filtered_scan_share(size_t share) {
  std::unique_lock lock(mutex_);
  params_.filtered_scan_share = std::max<size_t>(share, 1);
  ++version_;  // a cached filter's plan depends on it
}

void Gallery::set_graph_for_global(bool graph) {
  std::unique_lock lock(mutex_);
  params_.graph_for_global = graph;
  ++version_;  // so does a cached filter's plan
}

void Gallery::templates(std::vector<int64_t>& template_ids, std::vector<int64_t>& subject_ids,
                        std::vector<float>& vectors) const {
  std::shared_lock lock(mutex_);
  for (size_t slot = 0; slot < used_slots_; ++slot) {
    if (!live_[slot]) continue;
    template_ids.push_back(slot_template_[slot]);
    subject_ids.push_back(slot_subject_[slot]);
    vectors.insert(vectors.end(), vector_of(slot), vector_of(slot) + params_.dim);
  }
}

}  // namespace retailface
