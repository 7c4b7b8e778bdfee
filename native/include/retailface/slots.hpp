// Slot storage: one slot per template holds its 256-bit sign code, template id, subject id and float vector;
// freed slots are reused. Without a graph (the default) the vectors lie in one contiguous array, row = slot.
// With one, the slot number is the template's label in an hnswlib graph, which then keeps the only copy of
// the float vector; a removed template is marked deleted in the graph and re-added in place when its slot
// is reused. A graph-less store can build its graph later from its vectors (`build_graph`, `install_graph`).
//
// Not synchronised by itself: the Gallery's lock guards it (searches share it, changes take it alone).
// Only `write` may run on several threads at once, for distinct slots (hnswlib's per-node locks).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <hnswlib/hnswlib.h>

#include "retailface/gallery_types.hpp"
#include "retailface/kernels.hpp"
#include "retailface/top_subjects.hpp"

namespace retailface {

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

class Slots {
 public:
  using Index = hnswlib::HierarchicalNSW<float>;
  // A graph over the live slots, built aside (under a shared lock) and then installed (under an exclusive one).
  struct Graph {
    std::unique_ptr<Index> index;
    std::vector<hnswlib::tableint> internal;  // slot -> internal id
  };

  // Uses dim, capacity (already rounded to whole code blocks), hnsw_graph, and for the graph M,
  // ef_construction and ef_search.
  explicit Slots(const GalleryParams& params);

  // Book-keeping of an add, serially: every template gets a slot (a template id already present is
  // replaced; the same id twice in one call: the later row wins). Returns (slot, input row) of each slot
  // whose code and vector the caller must then `write`, each slot once.
  std::vector<std::pair<size_t, size_t>> assign(const int64_t* template_ids, const int64_t* subject_ids, size_t n);
  // Stores an assigned slot's code and vector (inserting it into the graph, if there is one).
  void write(size_t slot, const float* vector, const uint64_t* code);
  size_t remove(const int64_t* template_ids, size_t n);
  size_t remove_subject(int64_t subject_id);

  size_t capacity() const { return capacity_; }
  size_t used() const { return used_slots_; }  // slots ever handed out (live or free)
  size_t live_count() const { return used_slots_ - free_slots_.size(); }
  size_t subject_count() const { return subject_slots_.size(); }
  bool live(size_t slot) const { return live_[slot] != 0; }
  int64_t template_of(size_t slot) const { return slot_template_[slot]; }
  int64_t subject_of(size_t slot) const { return slot_subject_[slot]; }
  const uint64_t* codes() const { return codes_.data(); }  // blocked layout, see kernels.hpp
  bool has_graph() const { return index_ != nullptr; }
  // The template's float vector: in hnswlib's storage when there is a graph, in ours otherwise.
  const float* vector_of(size_t slot) const {
    if (index_) return reinterpret_cast<const float*>(index_->getDataByInternalId(slot_internal_[slot]));
    return vectors_.data() + slot * dim_;
  }
  float similarity(size_t slot, const float* query) const { return kernels::dot(query, vector_of(slot), dim_); }

  // Live slots of the given subjects, in memory order (a forward scan).
  std::vector<uint32_t> slots_of(const std::unordered_set<int64_t>& subjects) const;
  // The k nearest templates by hnswlib's graph walk, the filter (allowed subjects, or nullptr) inside it.
  void graph_search(const float* query, size_t k, const std::unordered_set<int64_t>* allowed,
                    TopSubjects& best) const;
  void set_ef(size_t ef) {
    if (index_) index_->setEf(ef);
  }
  // A graph over every live slot, from the stored vectors, inserted on params.threads threads. Reads only.
  Graph build_graph(const GalleryParams& params) const;
  // Makes `graph` (built from the slots as they are now) the store of the vectors; ours is freed.
  void install_graph(Graph graph);
  // memory parts, all but the filters'.
  MemoryParts memory() const;
  // Copies of every live template.
  void copy_live(std::vector<int64_t>& template_ids, std::vector<int64_t>& subject_ids,
                 std::vector<float>& vectors) const;

 private:
  std::unique_ptr<Index> new_index(size_t capacity, const GalleryParams& params) const;
  void ensure_capacity(size_t needed);
  void resize_slots(size_t capacity);  // the per-slot arrays (vectors without a graph, codes, ids)
  void release(size_t slot);
  void store_code(size_t slot, const uint64_t* code);
  void unlink_from_subject(size_t slot);

  size_t dim_;
  size_t capacity_;
  mutable InnerProductSpace space_;  // hnswlib takes it by non-const pointer; it never changes
  std::unique_ptr<Index> index_;                  // the graph, or nullptr
  std::vector<hnswlib::tableint> slot_internal_;  // with a graph: slot -> hnswlib's internal id (where its vector is)
  std::vector<float> vectors_;                    // without a graph: capacity x dim, row = slot
  std::vector<uint64_t> codes_;                   // blocked layout, see kernels.hpp
  std::vector<int64_t> slot_template_, slot_subject_;
  std::vector<uint8_t> live_;
  std::vector<size_t> free_slots_;
  size_t used_slots_ = 0;
  std::unordered_map<int64_t, size_t> template_slot_;
  std::unordered_map<int64_t, std::vector<size_t>> subject_slots_;
};

}  // namespace retailface
