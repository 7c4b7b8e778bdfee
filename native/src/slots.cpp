#include "retailface/slots.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <random>
#include <stdexcept>

#include "retailface/parallel.hpp"

namespace retailface {

namespace {

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

}  // namespace

Slots::Slots(const GalleryParams& params) : dim_(params.dim), capacity_(params.capacity), space_(params.dim) {
  if (params.hnsw_graph) index_ = new_index(capacity_, params);
  resize_slots(capacity_);
}

void Slots::resize_slots(size_t capacity) {
  if (index_) {
    slot_internal_.resize(capacity, 0);
  } else {
    vectors_.resize(capacity * dim_, 0.f);
  }
  codes_.resize(capacity * kernels::kCodeWords);
  slot_template_.resize(capacity, -1);
  slot_subject_.resize(capacity, -1);
  live_.resize(capacity, 0);
}

void Slots::ensure_capacity(size_t needed) {
  if (needed <= capacity_) return;
  if (needed > std::numeric_limits<uint32_t>::max()) throw std::length_error("gallery capacity is limited to 2^32 slots");
  size_t capacity = capacity_;
  while (capacity < needed) capacity *= 2;
  if (index_) index_->resizeIndex(capacity);
  resize_slots(capacity);
  capacity_ = capacity;
}

std::vector<std::pair<size_t, size_t>> Slots::assign(const int64_t* template_ids, const int64_t* subject_ids,
                                                     size_t n) {
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
      unlink_from_subject(slot);
    } else {
      if (existing != template_slot_.end()) release(existing->second);
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
  return inserted;
}

void Slots::write(size_t slot, const float* vector, const uint64_t* code) {
  store_code(slot, code);
  if (!index_) {
    std::copy(vector, vector + dim_, vectors_.begin() + static_cast<std::ptrdiff_t>(slot * dim_));
    return;
  }
  // A reused slot's label is marked deleted in the graph: addPoint un-deletes it and updates its
  // vector in place (same internal id). The label lock is what hnswlib's own addPoint takes.
  std::unique_lock label_lock(index_->getLabelOpMutex(slot));
  slot_internal_[slot] = index_->addPoint(vector, slot, -1);
}

void Slots::store_code(size_t slot, const uint64_t* code) {
  uint64_t* block = codes_.data() + slot / kernels::kLanes * kernels::kBlockWords;
  for (size_t word = 0; word < kernels::kCodeWords; ++word)
    block[word * kernels::kLanes + slot % kernels::kLanes] = code[word];
}

void Slots::unlink_from_subject(size_t slot) {
  auto subject = subject_slots_.find(slot_subject_[slot]);
  if (subject == subject_slots_.end()) return;
  auto& slots = subject->second;
  slots.erase(std::remove(slots.begin(), slots.end(), slot), slots.end());
  if (slots.empty()) subject_slots_.erase(subject);
}

void Slots::release(size_t slot) {
  if (!live_[slot]) return;
  live_[slot] = 0;
  // Erasure leaves nothing of the face in memory. Without a graph its row becomes zeros. With one, the
  // deleted node keeps guiding graph walks until its slot is reused, so its vector becomes a random unit
  // vector (unrelated to anyone). Its code becomes zeros either way.
  if (index_) {
    index_->markDelete(slot);
    std::mt19937 random(static_cast<uint32_t>(slot) ^ 0x5eed1234u);
    std::normal_distribution<float> gaussian;
    float* vector = reinterpret_cast<float*>(index_->getDataByInternalId(slot_internal_[slot]));
    float norm = 0.f;
    for (size_t i = 0; i < dim_; ++i) {
      vector[i] = gaussian(random);
      norm += vector[i] * vector[i];
    }
    for (size_t i = 0; i < dim_; ++i) vector[i] /= std::sqrt(norm);
  } else {
    std::fill_n(vectors_.begin() + static_cast<std::ptrdiff_t>(slot * dim_), dim_, 0.f);
  }
  uint64_t zeros[kernels::kCodeWords] = {};
  store_code(slot, zeros);
  template_slot_.erase(slot_template_[slot]);
  unlink_from_subject(slot);
  slot_template_[slot] = -1;
  slot_subject_[slot] = -1;
  free_slots_.push_back(slot);
}

size_t Slots::remove(const int64_t* template_ids, size_t n) {
  size_t removed = 0;
  for (size_t i = 0; i < n; ++i) {
    auto found = template_slot_.find(template_ids[i]);
    if (found == template_slot_.end()) continue;
    release(found->second);
    ++removed;
  }
  return removed;
}

size_t Slots::remove_subject(int64_t subject_id) {
  auto found = subject_slots_.find(subject_id);
  if (found == subject_slots_.end()) return 0;
  std::vector<size_t> slots = found->second;
  for (size_t slot : slots) release(slot);
  return slots.size();
}

std::vector<uint32_t> Slots::slots_of(const std::unordered_set<int64_t>& subjects) const {
  std::vector<uint32_t> slots;
  for (int64_t subject : subjects) {
    auto found = subject_slots_.find(subject);
    if (found == subject_slots_.end()) continue;
    for (size_t slot : found->second) slots.push_back(static_cast<uint32_t>(slot));
  }
  std::sort(slots.begin(), slots.end());
  return slots;
}

void Slots::graph_search(const float* query, size_t k, const std::unordered_set<int64_t>* allowed,
                         TopSubjects& best) const {
  if (!index_) throw std::logic_error("a graph plan on a gallery without a graph");
  std::unique_ptr<SubjectFilter> graph_filter;
  if (allowed != nullptr) graph_filter = std::make_unique<SubjectFilter>(slot_subject_, *allowed);
  auto found = index_->searchKnnCloserFirst(query, k, graph_filter.get());
  for (const auto& [distance, label] : found) best.offer(slot_subject_[label], slot_template_[label], 1.0f - distance);
}

std::unique_ptr<Slots::Index> Slots::new_index(size_t capacity, const GalleryParams& params) const {
  // hnswlib keeps the distance function's parameter by address: space_ lives as long as the Slots.
  auto index = std::make_unique<Index>(&space_, capacity, params.M, params.ef_construction, 100, false);
  index->setEf(params.ef_search);
  return index;
}

Slots::Graph Slots::build_graph(const GalleryParams& params) const {
  Graph graph{new_index(capacity_, params), std::vector<hnswlib::tableint>(capacity_, 0)};
  std::vector<size_t> live_slots;
  live_slots.reserve(live_count());
  for (size_t slot = 0; slot < used_slots_; ++slot)
    if (live_[slot]) live_slots.push_back(slot);
  Index& index = *graph.index;
  parallel_for(std::max<size_t>(params.threads, 1), live_slots.size(), [&](size_t i) {
    size_t slot = live_slots[i];
    std::unique_lock label_lock(index.getLabelOpMutex(slot));
    graph.internal[slot] = index.addPoint(vector_of(slot), slot, -1);
  });
  return graph;
}

void Slots::install_graph(Graph graph) {
  if (graph.internal.size() != capacity_) throw std::logic_error("the graph was built for another capacity");
  index_ = std::move(graph.index);
  slot_internal_ = std::move(graph.internal);
  // Free slots are not in the graph: when reused, `write` inserts them as new elements. Our copy is scrubbed
  // and freed: from now on hnswlib's is the only one.
  std::fill(vectors_.begin(), vectors_.end(), 0.f);
  std::vector<float>().swap(vectors_);
}

MemoryParts Slots::memory() const {
  MemoryParts parts;
  if (index_) {
    // hnswlib: level-0 block (vector, links, label), a lock, level and upper-link pointer per element; upper
    // levels (about 1 element in M has them); its label map; its fixed pool of per-label locks.
    size_t all = index_->max_elements_ * (index_->size_data_per_element_ + sizeof(std::mutex) + sizeof(int) + sizeof(void*)) +
                 index_->cur_element_count * index_->size_links_per_element_ / std::max<size_t>(index_->M_, 1) +
                 index_->label_lookup_.size() * 40 + index_->label_op_locks_.size() * sizeof(std::mutex);
    parts.vectors = index_->max_elements_ * index_->data_size_;
    parts.graph = all - parts.vectors;
  } else {
    parts.vectors = vectors_.capacity() * sizeof(float);
  }
  parts.codes = codes_.size() * sizeof(uint64_t);
  parts.ids = capacity_ * (2 * sizeof(int64_t) + 1) + slot_internal_.size() * sizeof(hnswlib::tableint) +
              template_slot_.size() * 32 + subject_slots_.size() * 48;
  return parts;
}

void Slots::copy_live(std::vector<int64_t>& template_ids, std::vector<int64_t>& subject_ids,
                      std::vector<float>& vectors) const {
  for (size_t slot = 0; slot < used_slots_; ++slot) {
    if (!live_[slot]) continue;
    template_ids.push_back(slot_template_[slot]);
    subject_ids.push_back(slot_subject_[slot]);
    vectors.insert(vectors.end(), vector_of(slot), vector_of(slot) + dim_);
  }
}

}  // namespace retailface
