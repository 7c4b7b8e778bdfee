#include "retailface/filter_cache.hpp"

#include <algorithm>
#include <cstring>

#include "retailface/planner.hpp"

namespace retailface {

std::shared_ptr<const FilterEntry> make_filter(const Slots& slots, const GalleryParams& params, uint64_t version,
                                               const int64_t* allowed, size_t allowed_count) {
  auto entry = std::make_shared<FilterEntry>();
  entry->version = version;
  entry->allowed.assign(allowed, allowed + allowed_count);
  entry->subjects.insert(allowed, allowed + allowed_count);
  entry->slots = slots.slots_of(entry->subjects);  // memory order: a forward scan
  entry->plan = choose_plan(params, slots.live_count(), entry->slots.size());
  if (entry->plan == Plan::kFilteredCodeScan) {
    entry->mask.assign((slots.used() + 63) / 64, 0);
    for (uint32_t slot : entry->slots) entry->mask[slot / 64] |= uint64_t{1} << (slot % 64);
  }
  if (entry->plan == Plan::kFilteredScan) entry->rows.build(slots, entry->slots, params.dim);
  return entry;
}

size_t FilterEntry::bytes() const {
  return sizeof(FilterEntry) + allowed.size() * sizeof(int64_t) + slots.size() * sizeof(uint32_t) + subjects.size() * 32 +
         rows.bytes() + mask.size() * sizeof(uint64_t);
}

std::shared_ptr<const FilterEntry> FilterCache::find(const int64_t* allowed, size_t allowed_count, uint64_t version) {
  std::lock_guard guard(mutex_);
  for (size_t i = 0; i < entries_.size(); ++i) {
    const auto& entry = entries_[i];
    if (entry->version == version && entry->allowed.size() == allowed_count &&
        std::memcmp(entry->allowed.data(), allowed, allowed_count * sizeof(int64_t)) == 0) {
      auto hit = entry;
      std::rotate(entries_.begin(), entries_.begin() + static_cast<std::ptrdiff_t>(i),
                  entries_.begin() + static_cast<std::ptrdiff_t>(i) + 1);
      return hit;
    }
  }
  return nullptr;
}

void FilterCache::keep(std::shared_ptr<const FilterEntry> entry) {
  std::lock_guard guard(mutex_);
  entries_.erase(std::remove_if(entries_.begin(), entries_.end(),
                                [&](const auto& cached) { return cached->version != entry->version; }),
                 entries_.end());
  entries_.insert(entries_.begin(), std::move(entry));
  if (entries_.size() > kMaxEntries) entries_.pop_back();
}

size_t FilterCache::bytes() const {
  std::lock_guard guard(mutex_);
  size_t total = 0;
  for (const auto& entry : entries_) total += entry->bytes();
  return total;
}

}  // namespace retailface
