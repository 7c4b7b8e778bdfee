// A hash set of row numbers, keyed by a value each row already holds (an id in an arena, an int64 key): the open
// addressing of slot_table.hpp with 8-byte entries, the row and the high 32 bits of its key's hash. A probe compares
// the hash bits first and reads the row's key only on a likely match: a miss (every insert of a new key) reads the
// table alone, not one row per entry it passes. An entry's home depends on its hash bits alone, so rehashing and
// backward-shift deletion never read a key again. Kept between 60% and 85% full: about 11 bytes per entry.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string_view>
#include <vector>

namespace retailface {

// A 64-bit hash of a string: 8 bytes at a time, splitmix64's finaliser at the end.
inline uint64_t hash_name(std::string_view name) {
  auto rotl = [](uint64_t x, int r) { return (x << r) | (x >> (64 - r)); };
  uint64_t h = 0x243f6a8885a308d3ull ^ (static_cast<uint64_t>(name.size()) * 0x9e3779b97f4a7c15ull);
  const char* at = name.data();
  size_t left = name.size();
  for (; left >= 8; at += 8, left -= 8) {
    uint64_t word;
    std::memcpy(&word, at, 8);
    h = rotl(h ^ (word * 0x9e3779b97f4a7c15ull), 29) * 0xbf58476d1ce4e5b9ull;
  }
  if (left > 0) {
    uint64_t word = 0;
    std::memcpy(&word, at, left);
    h = rotl(h ^ (word * 0x9e3779b97f4a7c15ull), 29) * 0xbf58476d1ce4e5b9ull;
  }
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
  return h ^ (h >> 31);
}

// A 64-bit hash of an int64 key: splitmix64's finaliser.
inline uint64_t hash_key(int64_t key) {
  uint64_t x = static_cast<uint64_t>(key) + 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

class RowTable {
 public:
  static constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();

  size_t size() const { return count_; }
  size_t bytes() const { return entries_.capacity() * sizeof(uint64_t); }

  // The row whose key (key_of(row)) is `key`, of hash `hash` (hash_name or hash_key of it), or kNone.
  template <typename Key, typename KeyOf>
  uint32_t find(const Key& key, uint64_t hash, KeyOf&& key_of) const {
    if (entries_.empty()) return kNone;
    const uint32_t tag = tag_of(hash);
    for (size_t at = home(tag);; at = next(at)) {
      uint64_t entry = entries_[at];
      uint32_t row = row_of(entry);
      if (row == kNone) return kNone;
      if (tag_of_entry(entry) == tag && key_of(row) == key) return row;
    }
  }

  // Brings the home of `hash` towards the cache (bulk inserts ask for the next ones' while working on this one).
  void prefetch(uint64_t hash) const {
    if (!entries_.empty()) __builtin_prefetch(&entries_[home(tag_of(hash))]);
  }

  // Stores `row` under its key's hash; the key must not be stored yet.
  void insert(uint64_t hash, uint32_t row) {
    if ((count_ + 1) * 100 > entries_.size() * 85) rehash(count_ + 1);
    place(entry_of(tag_of(hash), row));
    ++count_;
  }

  // Forgets `row` (stored under `hash`).
  void erase(uint64_t hash, uint32_t row) {
    if (entries_.empty()) return;
    const uint64_t wanted_entry = entry_of(tag_of(hash), row);
    size_t at = home(tag_of(hash));
    for (;; at = next(at)) {
      if (row_of(entries_[at]) == kNone) return;
      if (entries_[at] == wanted_entry) break;
    }
    size_t hole = at;
    for (size_t scan = next(hole);; scan = next(scan)) {
      uint64_t entry = entries_[scan];
      if (row_of(entry) == kNone) break;
      size_t wanted = home(tag_of_entry(entry));
      bool stays = hole <= scan ? (wanted > hole && wanted <= scan) : (wanted > hole || wanted <= scan);
      if (stays) continue;
      entries_[hole] = entry;
      hole = scan;
    }
    entries_[hole] = kEmpty;
    --count_;
  }

  // Room for `count` entries without a rehash.
  void reserve(size_t count) {
    if (count * 100 > entries_.size() * 85) rehash(count);
  }

  // Every row r becomes new_row(r), a row with the same key: entries stay where they are.
  template <typename NewRow>
  void renumber(NewRow&& new_row) {
    for (uint64_t& entry : entries_)
      if (row_of(entry) != kNone) entry = entry_of(tag_of_entry(entry), new_row(row_of(entry)));
  }

  void clear() {
    std::vector<uint64_t>().swap(entries_);
    count_ = 0;
  }

 private:
  static constexpr uint64_t kEmpty = std::numeric_limits<uint64_t>::max();
  static uint32_t tag_of(uint64_t hash) { return static_cast<uint32_t>(hash >> 32); }
  static uint32_t tag_of_entry(uint64_t entry) { return static_cast<uint32_t>(entry >> 32); }
  static uint32_t row_of(uint64_t entry) { return static_cast<uint32_t>(entry); }
  static uint64_t entry_of(uint32_t tag, uint32_t row) { return (static_cast<uint64_t>(tag) << 32) | row; }
  size_t home(uint32_t tag) const { return static_cast<size_t>((static_cast<uint64_t>(tag) * entries_.size()) >> 32); }
  size_t next(size_t at) const { return at + 1 == entries_.size() ? 0 : at + 1; }

  void place(uint64_t entry) {
    size_t at = home(tag_of_entry(entry));
    while (row_of(entries_[at]) != kNone) at = next(at);
    entries_[at] = entry;
  }

  void rehash(size_t count) {
    std::vector<uint64_t> old;
    old.swap(entries_);
    // Table sizes stay below 2^32 (home() maps 32 hash bits onto them): rows are 32-bit numbers anyway.
    entries_.assign(std::max<size_t>(16, count * 4 / 3 + 1), kEmpty);
    for (uint64_t entry : old)
      if (row_of(entry) != kNone) place(entry);
  }

  std::vector<uint64_t> entries_;
  size_t count_ = 0;
};

}  // namespace retailface
