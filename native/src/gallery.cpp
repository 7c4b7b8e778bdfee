#include "retailface/gallery.hpp"

#include <random>

namespace retailface {

namespace {

// Filter inside hnswlib's graph walk: only templates of allowed subjects are returned.
class SubjectFilter : public hnswlib::BaseFilterFunctor {
 public:
  SubjectFilter(const std::vector<int64_t>& slot_subject, const std::unordered_set<int64_t>& allowed)
      : slot_subject_(slot_subject), allowed_(allowed) {}
  bool operator()(hnswlib::labeltype label) override {
    return allowed_.count(slot_subject_[label]) != 0;
  }

 private:
  const std::vector<int64_t>& slot_subject_;
  const std::unordered_set<int64_t>& allowed_;
};

}  // namespace

Gallery::Gallery(const GalleryParams& params)
    : params_(params), space_(params.dim), distance_(space_.get_dist_func()), distance_param_(space_.get_dist_func_param()) {
  if (params_.dim == 0) throw std::invalid_argument("dim must be positive");
  params_.capacity = std::max<size_t>(params_.capacity, 16);
  params_.threads = std::max<size_t>(params_.threads, 1);
  index_ = std::make_unique<hnswlib::HierarchicalNSW<float>>(&space_, params_.capacity, params_.M,
                                                              params_.ef_construction, 100, false);
  index_->setEf(params_.ef_search);
  std::mt19937 random(20231123);  // fixed: codes must not change across restarts
  std::normal_distribution<float> gaussian;
  projections_.resize(kCodeBits * params_.dim);
  for (float& value : projections_) value = gaussian(random);
  codes_.resize(params_.capacity * kCodeWords);
  vectors_.resize(params_.capacity * params_.dim);
  slot_template_.resize(params_.capacity, -1);
  slot_subject_.resize(params_.capacity, -1);
  live_.resize(params_.capacity, 0);
}

void Gallery::ensure_capacity(size_t needed) {
  if (needed <= params_.capacity) return;
  size_t capacity = params_.capacity;
  while (capacity < needed) capacity *= 2;
  index_->resizeIndex(capacity);
  codes_.resize(capacity * kCodeWords);
  vectors_.resize(capacity * params_.dim);
  slot_template_.resize(capacity, -1);
  slot_subject_.resize(capacity, -1);
  live_.resize(capacity, 0);
  params_.capacity = capacity;
}

void Gallery::add(const int64_t* template_ids, const int64_t* subject_ids, const float* vectors, size_t n) {
  std::unique_lock lock(mutex_);
  for (size_t i = 0; i < n; ++i) {
    const float* vector = vectors + i * params_.dim;
    auto existing = template_slot_.find(template_ids[i]);
    if (existing != template_slot_.end()) remove_slot(existing->second);
    size_t slot;
    if (!free_slots_.empty()) {
      slot = free_slots_.back();
      free_slots_.pop_back();
    } else {
      ensure_capacity(used_slots_ + 1);
      slot = used_slots_++;
    }
    std::copy(vector, vector + params_.dim, vectors_.begin() + slot * params_.dim);
    encode(vector, codes_.data() + slot * kCodeWords);
    slot_template_[slot] = template_ids[i];
    slot_subject_[slot] = subject_ids[i];
    live_[slot] = 1;
    template_slot_[template_ids[i]] = slot;
    subject_slots_[subject_ids[i]].push_back(slot);
    // A reused slot's label is marked deleted in the graph: addPoint un-deletes and updates it.
    index_->addPoint(vectors_.data() + slot * params_.dim, slot);
  }
}

void Gallery::remove_slot(size_t slot) {
  if (!live_[slot]) return;
  live_[slot] = 0;
  index_->markDelete(slot);
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
  auto found = subject_slots_.find(subject_id);
  if (found == subject_slots_.end()) return 0;
  std::vector<size_t> slots = found->second;
  for (size_t slot : slots) remove_slot(slot);
  return slots.size();
}

float Gallery::similarity(const float* a, const float* b) const {
  // hnswlib's SIMD inner-product distance is 1 - <a, b>.
  return 1.0f - distance_(a, b, distance_param_);
}

void Gallery::encode(const float* vector, uint64_t* code) const {
  for (size_t word = 0; word < kCodeWords; ++word) {
    uint64_t bits = 0;
    for (size_t bit = 0; bit < 64; ++bit) {
      // hnswlib's SIMD inner product: 1 - <plane, vector> <= 1 means the dot product is >= 0.
      float distance = distance_(projections_.data() + (word * 64 + bit) * params_.dim, vector, distance_param_);
      bits |= static_cast<uint64_t>(distance <= 1.0f) << bit;
    }
    code[word] = bits;
  }
}

void Gallery::code_scan(const float* query, size_t top_k, std::unordered_map<int64_t, Candidate>& best) const {
  uint64_t query_code[kCodeWords];
  encode(query, query_code);
  size_t live = used_slots_ - free_slots_.size();
  size_t wanted = std::min(live, std::max({params_.min_candidates, live / params_.candidate_divisor, top_k * 8}));
  // Per-thread buffers: a query must not allocate in proportion to the gallery.
  thread_local std::vector<std::pair<uint16_t, size_t>> candidates;
  const uint64_t* codes = codes_.data();
  auto distance_of = [&](size_t slot) {
    const uint64_t* code = codes + slot * kCodeWords;
    uint32_t distance = 0;
    for (size_t word = 0; word < kCodeWords; ++word) distance += __builtin_popcountll(code[word] ^ query_code[word]);
    return live_[slot] ? distance : static_cast<uint32_t>(kCodeBits + 1);
  };
  auto cutoff_for = [](const uint32_t* histogram, size_t needed) {
    size_t cutoff = 0, kept = 0;
    while (cutoff <= kCodeBits && kept + histogram[cutoff] < needed) kept += histogram[cutoff++];
    return cutoff;
  };
  // One pass over the codes: a 1-in-16 sample estimates the cut-off (with a margin), the full pass keeps
  // every slot under it and counts the exact histogram; a second pass runs only if the estimate was short.
  constexpr size_t kStride = 16;
  uint32_t sample[kCodeBits + 2] = {};
  for (size_t slot = 0; slot < used_slots_; slot += kStride) ++sample[distance_of(slot)];
  size_t estimate = std::min(kCodeBits, cutoff_for(sample, wanted / kStride * 2 + 8) + 2);
  candidates.clear();
  for (size_t slot = 0; slot < used_slots_; ++slot) {
    uint32_t distance = distance_of(slot);
    if (distance <= estimate) candidates.emplace_back(static_cast<uint16_t>(distance), slot);
  }
  // Every slot within the estimate is a candidate, so their histogram is the true one up to it.
  uint32_t histogram[kCodeBits + 2] = {};
  for (const auto& candidate : candidates) ++histogram[candidate.first];
  size_t cutoff = candidates.size() >= wanted ? cutoff_for(histogram, wanted) : kCodeBits + 1;
  if (cutoff > estimate) {  // rare: the sample under-estimated; count everything, collect again
    std::fill(std::begin(histogram), std::end(histogram), 0u);
    for (size_t slot = 0; slot < used_slots_; ++slot) ++histogram[distance_of(slot)];
    cutoff = cutoff_for(histogram, wanted);
    candidates.clear();
    for (size_t slot = 0; slot < used_slots_; ++slot) {
      uint32_t distance = distance_of(slot);
      if (distance <= cutoff) candidates.emplace_back(static_cast<uint16_t>(distance), slot);
    }
  }
  thread_local std::vector<std::pair<float, size_t>> scored;
  scored.clear();
  for (auto [distance, slot] : candidates)
    if (distance <= cutoff) scored.emplace_back(similarity(query, vectors_.data() + slot * params_.dim), slot);
  // Enough templates to fill top_k distinct subjects even when members have several templates.
  size_t keep = std::min(scored.size(), std::max<size_t>(top_k * 16, 64));
  std::partial_sort(scored.begin(), scored.begin() + keep, scored.end(),
                    [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t i = 0; i < keep; ++i) {
    auto [score, slot] = scored[i];
    auto& entry = best.try_emplace(slot_subject_[slot], Candidate{slot_subject_[slot], slot_template_[slot], -2.f})
                      .first->second;
    if (score > entry.score) entry = Candidate{slot_subject_[slot], slot_template_[slot], score};
  }
}

void Gallery::scan_slots(const float* query, const std::vector<size_t>& slots,
                         std::unordered_map<int64_t, Candidate>& best) const {
  for (size_t slot : slots) {
    float score = similarity(query, vectors_.data() + slot * params_.dim);
    auto& entry = best.try_emplace(slot_subject_[slot], Candidate{slot_subject_[slot], slot_template_[slot], -2.f})
                      .first->second;
    if (score > entry.score) entry = Candidate{slot_subject_[slot], slot_template_[slot], score};
  }
}

void Gallery::scan_all(const float* query, std::unordered_map<int64_t, Candidate>& best) const {
  for (size_t slot = 0; slot < used_slots_; ++slot) {
    if (!live_[slot]) continue;
    float score = similarity(query, vectors_.data() + slot * params_.dim);
    auto& entry = best.try_emplace(slot_subject_[slot], Candidate{slot_subject_[slot], slot_template_[slot], -2.f})
                      .first->second;
    if (score > entry.score) entry = Candidate{slot_subject_[slot], slot_template_[slot], score};
  }
}

void Gallery::search_one(const float* query, size_t top_k, float threshold, float margin,
                         const std::unordered_set<int64_t>* allowed, size_t allowed_templates, SearchOutput& out,
                         size_t row) const {
  std::unordered_map<int64_t, Candidate> best;
  Plan plan;
  size_t live = used_slots_ - free_slots_.size();
  if (live == 0 || (allowed != nullptr && allowed_templates == 0)) {
    plan = Plan::kEmpty;
  } else if (allowed != nullptr && (allowed_templates <= params_.filtered_scan_below || live <= params_.exact_below)) {
    plan = Plan::kFilteredScan;
    for (int64_t subject : *allowed) {
      auto found = subject_slots_.find(subject);
      if (found != subject_slots_.end()) scan_slots(query, found->second, best);
    }
  } else if (allowed == nullptr && live <= params_.exact_below) {
    plan = Plan::kExactScan;
    scan_all(query, best);
  } else if (allowed == nullptr && !params_.graph_for_global) {
    plan = Plan::kCodeScan;
    code_scan(query, top_k, best);
  } else {
    // Several templates per subject: ask the graph for more templates than subjects wanted.
    size_t k = std::min(live, std::max<size_t>(top_k * 8, 32));
    std::unique_ptr<SubjectFilter> filter;
    if (allowed != nullptr) filter = std::make_unique<SubjectFilter>(slot_subject_, *allowed);
    plan = allowed != nullptr ? Plan::kFilteredGraph : Plan::kGraph;
    auto found = index_->searchKnnCloserFirst(query, k, filter.get());
    for (const auto& [distance, label] : found) {
      float score = 1.0f - distance;
      auto& entry = best.try_emplace(slot_subject_[label], Candidate{slot_subject_[label], slot_template_[label], -2.f})
                        .first->second;
      if (score > entry.score) entry = Candidate{slot_subject_[label], slot_template_[label], score};
    }
  }

  std::vector<Candidate> ranked;
  ranked.reserve(best.size());
  for (const auto& [subject, candidate] : best) ranked.push_back(candidate);
  size_t keep = std::min(top_k, ranked.size());
  std::partial_sort(ranked.begin(), ranked.begin() + keep, ranked.end(), [](const Candidate& a, const Candidate& b) {
    return a.score > b.score || (a.score == b.score && a.subject < b.subject);
  });
  for (size_t i = 0; i < keep; ++i) {
    out.subjects[row * top_k + i] = ranked[i].subject;
    out.template_ids[row * top_k + i] = ranked[i].template_id;
    out.scores[row * top_k + i] = ranked[i].score;
  }
  Decision decision = Decision::kNoMatch;
  if (!ranked.empty() && ranked[0].score >= threshold) {
    // The runner-up is looked at even when top_k is 1: ambiguity must not depend on top_k.
    float second = -2.f;
    if (ranked.size() > 1) {
      second = keep > 1 ? ranked[1].score : std::max_element(ranked.begin() + 1, ranked.end(),
                                                             [](const Candidate& a, const Candidate& b) {
                                                               return a.score < b.score;
                                                             })->score;
    }
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
  std::unique_ptr<std::unordered_set<int64_t>> allowed_set;
  size_t allowed_templates = 0;
  if (allowed != nullptr) {
    allowed_set = std::make_unique<std::unordered_set<int64_t>>(allowed, allowed + allowed_count);
    for (int64_t subject : *allowed_set) {
      auto found = subject_slots_.find(subject);
      if (found != subject_slots_.end()) allowed_templates += found->second.size();
    }
  }
  size_t workers = std::min(params_.threads, n);
  auto run = [&](size_t begin, size_t end) {
    for (size_t row = begin; row < end; ++row)
      search_one(queries + row * params_.dim, top_k, threshold, margin, allowed_set.get(), allowed_templates, out,
                 row);
  };
  if (workers <= 1) {
    run(0, n);
  } else {
    std::vector<std::thread> pool;
    size_t chunk = (n + workers - 1) / workers;
    for (size_t w = 0; w < workers; ++w) {
      size_t begin = w * chunk, end = std::min(n, begin + chunk);
      if (begin < end) pool.emplace_back(run, begin, end);
    }
    for (auto& thread : pool) thread.join();
  }
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
  size_t graph = index_->max_elements_ * index_->size_data_per_element_ +
                 index_->cur_element_count * index_->size_links_per_element_ / std::max<size_t>(index_->M_, 1);
  return graph + vectors_.size() * sizeof(float) + codes_.size() * sizeof(uint64_t) + params_.capacity * (2 * sizeof(int64_t) + 1) +
         template_slot_.size() * 32 + subject_slots_.size() * 48;
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
}

void Gallery::set_graph_for_global(bool graph) {
  std::unique_lock lock(mutex_);
  params_.graph_for_global = graph;
}

void Gallery::templates(std::vector<int64_t>& template_ids, std::vector<int64_t>& subject_ids,
                        std::vector<float>& vectors) const {
  std::shared_lock lock(mutex_);
  for (size_t slot = 0; slot < used_slots_; ++slot) {
    if (!live_[slot]) continue;
    template_ids.push_back(slot_template_[slot]);
    subject_ids.push_back(slot_subject_[slot]);
    vectors.insert(vectors.end(), vectors_.begin() + slot * params_.dim, vectors_.begin() + (slot + 1) * params_.dim);
  }
}

}  // namespace retailface
