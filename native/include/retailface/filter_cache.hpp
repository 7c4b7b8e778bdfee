// The filter cache: live slots (and subject set) of one filter, kept for the next searches with the same
// filter until the gallery changes: a store's cameras search with the same member list again and again.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_set>
#include <vector>

#include "retailface/gallery_types.hpp"
#include "retailface/int8_scan.hpp"
#include "retailface/slots.hpp"

namespace retailface {

struct FilterEntry {
  uint64_t version = 0;  // of the gallery it was made from
  std::vector<int64_t> allowed;
  std::vector<uint32_t> slots;
  std::unordered_set<int64_t> subjects;
  // Chosen once with the entry: everything the choice depends on (size, ef) bumps the gallery's version.
  Plan plan = Plan::kEmpty;
  QuantizedRows rows;           // for the filtered scan only: rows[i] describes slots[i]
  std::vector<uint64_t> mask;   // for the filtered code scan only: bit per slot, set where the slot is allowed
  size_t bytes() const;
};

// The entry of a filter (allowed: sorted unique subject ids) for the gallery as it is at `version`: its
// slots, its plan and what that plan scans.
std::shared_ptr<const FilterEntry> make_filter(const Slots& slots, const GalleryParams& params, uint64_t version,
                                               const int64_t* allowed, size_t allowed_count);

// The most recent entries, of the current version only; safe to use from concurrent searches.
class FilterCache {
 public:
  // The entry of this filter made at `version` (now the most recent), or nullptr.
  std::shared_ptr<const FilterEntry> find(const int64_t* allowed, size_t allowed_count, uint64_t version);
  // Keeps `entry` first, dropping entries of other versions and the least recent beyond the limit.
  void keep(std::shared_ptr<const FilterEntry> entry);
  size_t bytes() const;

 private:
  static constexpr size_t kMaxEntries = 8;
  mutable std::mutex mutex_;
  std::vector<std::shared_ptr<const FilterEntry>> entries_;  // most recent first
};

}  // namespace retailface
