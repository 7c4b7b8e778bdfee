#include "retailface/slots.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <random>
#include <stdexcept>

#include "retailface/parallel.hpp"
#include "retailface/quantize.hpp"

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
  template_slot_.reserve(capacity_, template_key());  // filling the slots (a snapshot's load) rehashes nothing
}

void Slots::resize_slots(size_t capacity) {
  if (index_) slot_internal_.resize(capacity, 0);
  rows_.resize(capacity * dim_, 0);
  scales_.resize(capacity, 0.f);
  first_codes_.resize(capacity * kernels::kHalfWords);
  second_codes_.resize(capacity * kernels::kHalfWords);
  slot_template_.resize(capacity, -1);
  slot_subject_.resize(capacity, -1);
  next_of_subject_.resize(capacity, SlotTable::kNone);
  live_.resize(capacity, 0);
}

void Slots::ensure_capacity(size_t needed) {
  if (needed <= capacity_) return;
  if (needed >= SlotTable::kNone) throw std::length_error("gallery capacity is limited to 2^32 - 1 slots");
  size_t capacity = capacity_;
  while (capacity < needed) capacity *= 2;
  if (index_) index_->resizeIndex(capacity);
  resize_slots(capacity);
  capacity_ = capacity;
  template_slot_.reserve(capacity, template_key());
}

std::vector<std::pair<size_t, size_t>> Slots::assign(const int64_t* template_ids, const int64_t* subject_ids,
                                                     size_t n) {
  size_t fresh = n > free_slots_.size() ? n - free_slots_.size() : 0;
  ensure_capacity(used_slots_ + fresh);
  template_slot_.reserve(template_slot_.size() + n, template_key());
  std::vector<std::pair<size_t, size_t>> inserted;  // (slot, input row) handed out by this call, each slot once
  inserted.reserve(n);
  // Slot -> its entry in `inserted`, for slots handed out by this call: fresh slots by offset, reused ones in a
  // map (a bulk add of millions takes fresh slots, and must not build a hash map of them).
  const size_t first_fresh = used_slots_;
  std::vector<uint32_t> fresh_entry;
  std::unordered_map<size_t, size_t> reused_entry;
  auto entry_of = [&](size_t slot) -> std::optional<size_t> {
    if (slot >= first_fresh) {
      size_t offset = slot - first_fresh;
      if (offset < fresh_entry.size()) return fresh_entry[offset];
      return std::nullopt;
    }
    auto found = reused_entry.find(slot);
    if (found == reused_entry.end()) return std::nullopt;
    return found->second;
  };
  constexpr size_t kAhead = 8;  // the tables' entries for row i + kAhead are on their way while row i is assigned
  for (size_t i = 0; i < std::min(n, kAhead); ++i) {
    template_slot_.prefetch(template_ids[i]);
    subject_head_.prefetch(subject_ids[i]);
  }
  for (size_t i = 0; i < n; ++i) {
    if (i + kAhead < n) {
      template_slot_.prefetch(template_ids[i + kAhead]);
      subject_head_.prefetch(subject_ids[i + kAhead]);
    }
    size_t slot;
    uint32_t existing = template_slot_.find(template_ids[i], template_key());
    std::optional<size_t> entry = existing != SlotTable::kNone ? entry_of(existing) : std::nullopt;
    if (entry.has_value()) {
      // The same template id twice in one call: the later row wins, in the slot not yet stored.
      slot = existing;
      inserted[*entry].second = i;
      unlink_from_subject(slot);
    } else {
      if (existing != SlotTable::kNone) release(existing);
      if (!free_slots_.empty()) {
        slot = free_slots_.back();
        free_slots_.pop_back();
        if (slot >= first_fresh) fresh_entry[slot - first_fresh] = static_cast<uint32_t>(inserted.size());
        else reused_entry[slot] = inserted.size();
      } else {
        ensure_capacity(used_slots_ + 1);
        slot = used_slots_++;
        fresh_entry.push_back(static_cast<uint32_t>(inserted.size()));
      }
      inserted.emplace_back(slot, i);
      slot_template_[slot] = template_ids[i];
      template_slot_.put(template_ids[i], static_cast<uint32_t>(slot), template_key());
    }
    slot_subject_[slot] = subject_ids[i];
    live_[slot] = 1;
    link_to_subject(slot);
  }
  return inserted;
}

void Slots::store(size_t slot, const int8_t* row, float scale, const uint64_t* code, const float* vector) {
  store_code(slot, code);
  std::copy(row, row + dim_, rows_.begin() + static_cast<std::ptrdiff_t>(slot * dim_));
  scales_[slot] = scale;
  if (!index_) return;
  std::vector<float> restored;
  if (vector == nullptr) {
    restored.resize(dim_);
    restore_int8(row, scale, dim_, restored.data());
    vector = restored.data();
  }
  // A reused slot's label is marked deleted in the graph: addPoint un-deletes it and updates its
  // vector in place (same internal id). The label lock is what hnswlib's own addPoint takes.
  std::unique_lock label_lock(index_->getLabelOpMutex(slot));
  slot_internal_[slot] = index_->addPoint(vector, slot, -1);
}

void Slots::store_code(size_t slot, const uint64_t* code) {
  size_t block = slot / kernels::kLanes * kernels::kHalfBlockWords, lane = slot % kernels::kLanes;
  for (size_t word = 0; word < kernels::kHalfWords; ++word) {
    first_codes_[block + word * kernels::kLanes + lane] = code[word];
    second_codes_[slot * kernels::kHalfWords + word] = code[kernels::kHalfWords + word];
  }
}

void Slots::link_to_subject(size_t slot) {
  // The slot becomes its subject's first; slot_subject_[slot] is already its subject.
  uint32_t head = subject_head_.find(slot_subject_[slot], subject_key());
  next_of_subject_[slot] = head;
  subject_head_.put(slot_subject_[slot], static_cast<uint32_t>(slot), subject_key());
}

void Slots::unlink_from_subject(size_t slot) {
  int64_t subject = slot_subject_[slot];
  uint32_t head = subject_head_.find(subject, subject_key());
  if (head == SlotTable::kNone) return;
  uint32_t next = next_of_subject_[slot];
  next_of_subject_[slot] = SlotTable::kNone;
  if (head == slot) {
    if (next == SlotTable::kNone) subject_head_.erase(subject, subject_key());
    else subject_head_.put(subject, next, subject_key());
    return;
  }
  for (uint32_t at = head; at != SlotTable::kNone; at = next_of_subject_[at]) {
    if (next_of_subject_[at] == slot) {
      next_of_subject_[at] = next;
      return;
    }
  }
}

void Slots::release(size_t slot) {
  if (!live_[slot]) return;
  live_[slot] = 0;
  // Erasure leaves nothing of the face in memory: its row, scale and code become zeros. With a graph, the
  // deleted node keeps guiding graph walks until its slot is reused, so its vector there becomes a random
  // unit vector (unrelated to anyone).
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
  }
  std::fill_n(rows_.begin() + static_cast<std::ptrdiff_t>(slot * dim_), dim_, int8_t{0});
  scales_[slot] = 0.f;
  uint64_t zeros[kernels::kCodeWords] = {};
  store_code(slot, zeros);
  template_slot_.erase(slot_template_[slot], template_key());
  unlink_from_subject(slot);
  slot_template_[slot] = -1;
  slot_subject_[slot] = -1;
  free_slots_.push_back(slot);
}

size_t Slots::remove(const int64_t* template_ids, size_t n) {
  size_t removed = 0;
  for (size_t i = 0; i < n; ++i) {
    uint32_t slot = template_slot_.find(template_ids[i], template_key());
    if (slot == SlotTable::kNone) continue;
    release(slot);
    ++removed;
  }
  return removed;
}

size_t Slots::remove_subject(int64_t subject_id) {
  std::vector<uint32_t> slots;
  for (uint32_t at = subject_head_.find(subject_id, subject_key()); at != SlotTable::kNone; at = next_of_subject_[at])
    slots.push_back(at);
  for (uint32_t slot : slots) release(slot);
  return slots.size();
}

std::vector<uint32_t> Slots::slots_of(const std::unordered_set<int64_t>& subjects) const {
  std::vector<uint32_t> slots;
  for (int64_t subject : subjects)
    for (uint32_t at = subject_head_.find(subject, subject_key()); at != SlotTable::kNone; at = next_of_subject_[at])
      slots.push_back(at);
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
    std::vector<float> vector(dim_);
    restore_int8(row_of(slot), scales_[slot], dim_, vector.data());
    std::unique_lock label_lock(index.getLabelOpMutex(slot));
    graph.internal[slot] = index.addPoint(vector.data(), slot, -1);
  });
  return graph;
}

void Slots::install_graph(Graph graph) {
  if (graph.internal.size() != capacity_) throw std::logic_error("the graph was built for another capacity");
  index_ = std::move(graph.index);
  slot_internal_ = std::move(graph.internal);
  // Free slots are not in the graph: when reused, `store` inserts them as new elements.
}

MemoryParts Slots::memory() const {
  MemoryParts parts;
  if (index_) {
    // hnswlib: level-0 block (its float copy, links, label), a lock, level and upper-link pointer per element;
    // upper levels (about 1 element in M has them); its label map; its fixed pool of per-label locks.
    parts.graph = index_->max_elements_ * (index_->size_data_per_element_ + sizeof(std::mutex) + sizeof(int) + sizeof(void*)) +
                  index_->cur_element_count * index_->size_links_per_element_ / std::max<size_t>(index_->M_, 1) +
                  index_->label_lookup_.size() * 40 + index_->label_op_locks_.size() * sizeof(std::mutex) +
                  slot_internal_.size() * sizeof(hnswlib::tableint);
  }
  parts.vectors = rows_.capacity() + scales_.capacity() * sizeof(float);
  parts.codes = (first_codes_.capacity() + second_codes_.capacity()) * sizeof(uint64_t);
  parts.ids = slot_template_.capacity() * sizeof(int64_t) + slot_subject_.capacity() * sizeof(int64_t) +
              next_of_subject_.capacity() * sizeof(uint32_t) + live_.capacity() + free_slots_.capacity() * sizeof(size_t) +
              template_slot_.bytes() + subject_head_.bytes();
  return parts;
}

void Slots::copy_live(StoredTemplates& out) const {
  size_t n = live_count();
  out.template_ids.reserve(n);
  out.subject_ids.reserve(n);
  out.rows.reserve(n * dim_);
  out.scales.reserve(n);
  out.codes.reserve(n * kernels::kCodeWords);
  for (size_t slot = 0; slot < used_slots_; ++slot) {
    if (!live_[slot]) continue;
    out.template_ids.push_back(slot_template_[slot]);
    out.subject_ids.push_back(slot_subject_[slot]);
    out.rows.insert(out.rows.end(), row_of(slot), row_of(slot) + dim_);
    out.scales.push_back(scales_[slot]);
    size_t block = slot / kernels::kLanes * kernels::kHalfBlockWords, lane = slot % kernels::kLanes;
    for (size_t word = 0; word < kernels::kHalfWords; ++word) out.codes.push_back(first_codes_[block + word * kernels::kLanes + lane]);
    for (size_t word = 0; word < kernels::kHalfWords; ++word) out.codes.push_back(second_codes_[slot * kernels::kHalfWords + word]);
  }
}

}  // namespace retailface
