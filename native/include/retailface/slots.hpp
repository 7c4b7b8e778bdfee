// Slot storage: one slot per template holds its 256-bit sign code, template id, subject id and its stored form
// (int8 row and scale, quantize.hpp); freed slots are reused. Rows lie in one contiguous array, row = slot.
// The id maps are SlotTables (4 bytes per entry, keyed through the slot arrays) and a per-slot link that chains
// the slots of one subject: about 32 bytes of ids per template instead of two node-based hash maps.
//
// An hnswlib graph over the templates is optional (the graph plans only): when there is one, the slot number is
// the template's label in it and it keeps its own float copy; a removed template is marked deleted in the graph
// and re-added in place when its slot is reused. A graph-less store can build its graph later (`build_graph`,
// `install_graph`).
//
// Not synchronised by itself: the Gallery's lock guards it (searches share it, changes take it alone).
// Only `write` may run on several threads at once, for distinct slots (hnswlib's per-node locks).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_set>
#include <utility>
#include <vector>

#include <hnswlib/hnswlib.h>

#include "retailface/gallery_types.hpp"
#include "retailface/kernels.hpp"
#include "retailface/slot_table.hpp"
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

// Every live template in stored form, in slot order: what a snapshot holds and `Slots::assign` + `store` restore.
struct StoredTemplates {
  std::vector<int64_t> template_ids, subject_ids;
  std::vector<int8_t> rows;    // n x dim
  std::vector<float> scales;   // n
  std::vector<uint64_t> codes; // n x kCodeWords
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
  // whose contents the caller must then `store`, each slot once.
  std::vector<std::pair<size_t, size_t>> assign(const int64_t* template_ids, const int64_t* subject_ids, size_t n);
  // Stores an assigned slot's row, scale and code; with a graph, also inserts `vector` (float, or nullptr to
  // insert the restored row).
  void store(size_t slot, const int8_t* row, float scale, const uint64_t* code, const float* vector);
  size_t remove(const int64_t* template_ids, size_t n);
  size_t remove_subject(int64_t subject_id);

  size_t capacity() const { return capacity_; }
  size_t used() const { return used_slots_; }  // slots ever handed out (live or free)
  size_t live_count() const { return used_slots_ - free_slots_.size(); }
  size_t subject_count() const { return subject_head_.size(); }
  bool live(size_t slot) const { return live_[slot] != 0; }
  int64_t template_of(size_t slot) const { return slot_template_[slot]; }
  int64_t subject_of(size_t slot) const { return slot_subject_[slot]; }
  // The codes' first and second halves, blocked (kernels.hpp).
  const uint64_t* first_codes() const { return first_codes_.data(); }
  const uint64_t* second_codes() const { return second_codes_.data(); }
  bool has_graph() const { return index_ != nullptr; }
  const int8_t* row_of(size_t slot) const { return rows_.data() + slot * dim_; }
  float scale_of(size_t slot) const { return scales_[slot]; }
  const float* scales() const { return scales_.data(); }
  // The query's score against the stored template.
  float similarity(size_t slot, const float* query) const { return scales_[slot] * kernels::dot_i8(query, row_of(slot), dim_); }

  // Live slots of the given subjects, in memory order (a forward scan).
  std::vector<uint32_t> slots_of(const std::unordered_set<int64_t>& subjects) const;
  // The k nearest templates by hnswlib's graph walk, the filter (allowed subjects, or nullptr) inside it.
  void graph_search(const float* query, size_t k, const std::unordered_set<int64_t>* allowed,
                    TopSubjects& best) const;
  void set_ef(size_t ef) {
    if (index_) index_->setEf(ef);
  }
  // A graph over every live slot, from the stored rows, inserted on params.threads threads. Reads only.
  Graph build_graph(const GalleryParams& params) const;
  // Makes `graph` (built from the slots as they are now) the gallery's graph.
  void install_graph(Graph graph);
  // memory parts, all but the filters'.
  MemoryParts memory() const;
  // Every live template in stored form.
  void copy_live(StoredTemplates& out) const;

 private:
  std::unique_ptr<Index> new_index(size_t capacity, const GalleryParams& params) const;
  void ensure_capacity(size_t needed);
  void resize_slots(size_t capacity);  // the per-slot arrays
  void release(size_t slot);
  void store_code(size_t slot, const uint64_t* code);
  void link_to_subject(size_t slot);
  void unlink_from_subject(size_t slot);
  auto template_key() const {
    return [this](uint32_t slot) { return slot_template_[slot]; };
  }
  auto subject_key() const {
    return [this](uint32_t slot) { return slot_subject_[slot]; };
  }

  size_t dim_;
  size_t capacity_;
  mutable InnerProductSpace space_;  // hnswlib takes it by non-const pointer; it never changes
  std::unique_ptr<Index> index_;                  // the graph, or nullptr
  std::vector<hnswlib::tableint> slot_internal_;  // with a graph: slot -> hnswlib's internal id
  std::vector<int8_t> rows_;                      // capacity x dim, row = slot
  std::vector<float> scales_;
  std::vector<uint64_t> first_codes_, second_codes_;  // the codes' halves, blocked (kernels.hpp)
  std::vector<int64_t> slot_template_, slot_subject_;
  std::vector<uint32_t> next_of_subject_;         // the subject's next slot, SlotTable::kNone at the end
  std::vector<uint8_t> live_;
  std::vector<size_t> free_slots_;
  size_t used_slots_ = 0;
  SlotTable template_slot_;  // template id -> slot
  SlotTable subject_head_;   // subject id -> first slot of its chain
};

}  // namespace retailface
