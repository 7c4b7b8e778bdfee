// A hash set of slot numbers, keyed by a value each slot already holds (its template id, its subject id):
// the table stores 4 bytes per entry and asks `key_of(slot)` for the key, instead of a second copy of it.
// Open addressing with linear probing and backward-shift deletion (no tombstones); any table size (the
// hash is mapped onto it by a multiply-shift), kept between 60% and 85% full: about 5.5 bytes per entry. Growing
// takes it to 60% (so that n inserts rehash O(n) entries in all), `reserve` to 75%.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace retailface {

class SlotTable {
 public:
  static constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();

  size_t size() const { return count_; }
  size_t bytes() const { return entries_.capacity() * sizeof(uint32_t); }

  // The slot stored under `key`, or kNone.
  template <typename KeyOf>
  uint32_t find(int64_t key, KeyOf&& key_of) const {
    if (entries_.empty()) return kNone;
    for (size_t at = home(key);; at = next(at)) {
      uint32_t slot = entries_[at];
      if (slot == kNone) return kNone;
      if (key_of(slot) == key) return slot;
    }
  }

  // Stores `slot` under `key` (key_of(slot) == key), replacing the slot stored under it, if any.
  template <typename KeyOf>
  void put(int64_t key, uint32_t slot, KeyOf&& key_of) {
    if ((count_ + 1) * 100 > entries_.size() * 85) rehash((count_ + 1) * 5 / 4, key_of);
    for (size_t at = home(key);; at = next(at)) {
      uint32_t held = entries_[at];
      if (held == kNone) {
        entries_[at] = slot;
        ++count_;
        return;
      }
      if (key_of(held) == key) {
        entries_[at] = slot;
        return;
      }
    }
  }

  // Forgets `key` (whose slot must still answer key_of with it).
  template <typename KeyOf>
  void erase(int64_t key, KeyOf&& key_of) {
    if (entries_.empty()) return;
    size_t at = home(key);
    for (;; at = next(at)) {
      if (entries_[at] == kNone) return;
      if (key_of(entries_[at]) == key) break;
    }
    // Backward shift: move later entries of the probe run into the hole when their home allows it.
    size_t hole = at;
    for (size_t scan = next(hole);; scan = next(scan)) {
      uint32_t slot = entries_[scan];
      if (slot == kNone) break;
      size_t wanted = home(key_of(slot));
      // The entry may move to the hole unless its home lies cyclically in (hole, scan].
      bool stays = hole <= scan ? (wanted > hole && wanted <= scan) : (wanted > hole || wanted <= scan);
      if (stays) continue;
      entries_[hole] = slot;
      hole = scan;
    }
    entries_[hole] = kNone;
    --count_;
  }

  // Brings the home of `key` towards the cache (a bulk insert asks for the next keys' while working on this one).
  void prefetch(int64_t key) const {
    if (!entries_.empty()) __builtin_prefetch(&entries_[home(key)]);
  }

  // Room for `count` entries at about 75% full, rehashing what is there.
  template <typename KeyOf>
  void reserve(size_t count, KeyOf&& key_of) {
    if (count * 100 > entries_.size() * 85) rehash(count, key_of);
  }

  void clear() {
    std::vector<uint32_t>().swap(entries_);
    count_ = 0;
  }

 private:
  static uint64_t mix(int64_t key) {  // splitmix64's finaliser
    uint64_t x = static_cast<uint64_t>(key) + 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
  }
  size_t home(int64_t key) const {
    return static_cast<size_t>((static_cast<unsigned __int128>(mix(key)) * entries_.size()) >> 64);
  }
  size_t next(size_t at) const { return at + 1 == entries_.size() ? 0 : at + 1; }

  template <typename KeyOf>
  void rehash(size_t count, KeyOf&& key_of) {
    std::vector<uint32_t> old;
    old.swap(entries_);
    entries_.assign(std::max<size_t>(16, count * 4 / 3 + 1), kNone);
    count_ = 0;
    // The keys are distinct: each goes to the first free entry from its home, with no key compared.
    for (uint32_t slot : old) {
      if (slot == kNone) continue;
      size_t at = home(key_of(slot));
      while (entries_[at] != kNone) at = next(at);
      entries_[at] = slot;
      ++count_;
    }
  }

  std::vector<uint32_t> entries_;
  size_t count_ = 0;
};

}  // namespace retailface
