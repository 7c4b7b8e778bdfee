#include "retailface/id_table.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace retailface {

// ------------------------------------------------------------ IdArena

size_t IdArena::stored_size(size_t length) {
  size_t prefix = 1;
  for (size_t rest = length >> 7; rest != 0; rest >>= 7) ++prefix;
  return prefix + length;
}

void IdArena::grow_to(size_t capacity) {
  std::unique_ptr<char[]> grown(new char[capacity]);  // not written: pages are touched as strings are appended
  if (used_ > 0) {
    std::memcpy(grown.get(), data_.get(), used_);
    std::memset(data_.get(), 0, used_);  // the old copy is freed without a trace of the ids
  }
  data_ = std::move(grown);
  capacity_ = capacity;
}

void IdArena::reserve(size_t more) {
  if (used_ + more > capacity_) grow_to(used_ + more);
}

uint64_t IdArena::append(std::string_view id) {
  size_t size = stored_size(id.size());
  if (used_ + size > capacity_) grow_to(std::max<size_t>({64, capacity_ * 2, used_ + size}));
  uint64_t offset = used_;
  char* at = data_.get() + used_;
  size_t length = id.size();
  do {
    uint8_t byte = length & 0x7f;
    length >>= 7;
    *at++ = static_cast<char>(length != 0 ? byte | 0x80 : byte);
  } while (length != 0);
  if (!id.empty()) std::memcpy(at, id.data(), id.size());
  used_ += size;
  return offset;
}

std::string_view IdArena::at(uint64_t offset) const {
  const char* at = data_.get() + offset;
  size_t length = 0;
  for (int shift = 0;; shift += 7) {
    uint8_t byte = static_cast<uint8_t>(*at++);
    length |= static_cast<size_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) break;
  }
  return {at, length};
}

void IdArena::scrub(uint64_t offset) {
  std::string_view id = at(offset);
  std::memset(data_.get() + offset, 0, static_cast<size_t>(id.data() - (data_.get() + offset)) + id.size());
}

void IdArena::wipe() {
  if (used_ > 0) std::memset(data_.get(), 0, used_);
}

// ------------------------------------------------------------ IdTable

size_t IdTable::bytes() const {
  return arena_.capacity() + subject_key_.capacity() * sizeof(int64_t) + subject_at_.capacity() * sizeof(uint64_t) +
         (subject_first_.capacity() + subject_tag_set_.capacity()) * sizeof(uint32_t) +
         template_key_.capacity() * sizeof(int64_t) + template_at_.capacity() * sizeof(uint64_t) +
         (template_owner_.capacity() + template_next_.capacity()) * sizeof(uint32_t) + subject_by_key_.bytes() +
         template_by_key_.bytes() + subject_by_id_.bytes() + template_by_id_.bytes();
}

size_t IdTable::templates_of(uint32_t subject_row) const {
  size_t count = 0;
  for (uint32_t at = subject_first_[subject_row]; at != kNone; at = template_next_[at]) ++count;
  return count;
}

void IdTable::reserve(size_t subjects, size_t templates, size_t id_bytes) {
  size_t s = subject_key_.size() + subjects, t = template_key_.size() + templates;
  subject_key_.reserve(s);
  subject_at_.reserve(s);
  subject_first_.reserve(s);
  subject_tag_set_.reserve(s);
  template_key_.reserve(t);
  template_at_.reserve(t);
  template_owner_.reserve(t);
  template_next_.reserve(t);
  subject_by_key_.reserve(subject_by_key_.size() + subjects);
  subject_by_id_.reserve(subject_by_id_.size() + subjects);
  template_by_key_.reserve(template_by_key_.size() + templates);
  template_by_id_.reserve(template_by_id_.size() + templates);
  arena_.reserve(id_bytes);
}

uint32_t IdTable::add_subject(std::string_view id, int64_t key, uint32_t tag_set) {
  return add_subject(id, hash_name(id), key, tag_set);
}

uint32_t IdTable::add_subject(std::string_view id, uint64_t hash, int64_t key, uint32_t tag_set) {
  if (subject_by_id_.find(id, hash, subject_id_of()) != kNone)
    throw std::invalid_argument("subject id " + std::string(id) + " is already a subject's");
  if (find_subject_key(key) != kNone)
    throw std::invalid_argument("subject key " + std::to_string(key) + " is already a subject's");
  if (subject_key_.size() >= kNone) throw std::length_error("an id table holds at most 2^32 - 1 subjects");
  auto row = static_cast<uint32_t>(subject_key_.size());
  subject_key_.push_back(key);
  subject_at_.push_back(arena_.append(id));
  subject_first_.push_back(kNone);
  subject_tag_set_.push_back(tag_set);
  subject_by_key_.insert(hash_key(key), row);
  subject_by_id_.insert(hash, row);
  return row;
}

void IdTable::link(uint32_t template_row) {
  uint32_t owner = template_owner_[template_row];
  template_next_[template_row] = subject_first_[owner];
  subject_first_[owner] = template_row;
}

void IdTable::unlink(uint32_t template_row) {
  uint32_t owner = template_owner_[template_row];
  uint32_t next = template_next_[template_row];
  template_next_[template_row] = kNone;
  if (subject_first_[owner] == template_row) {
    subject_first_[owner] = next;
    return;
  }
  for (uint32_t at = subject_first_[owner]; at != kNone; at = template_next_[at]) {
    if (template_next_[at] == template_row) {
      template_next_[at] = next;
      return;
    }
  }
}

void IdTable::forget_template(uint32_t template_row, bool unlink_it) {
  template_by_key_.erase(hash_key(template_key_[template_row]), template_row);
  template_by_id_.erase(hash_name(template_id(template_row)), template_row);
  if (unlink_it) unlink(template_row);
  arena_.scrub(template_at_[template_row]);
  template_at_[template_row] = kHole;
  template_key_[template_row] = -1;
  template_owner_[template_row] = kNone;
  template_next_[template_row] = kNone;
  ++template_holes_;
}

void IdTable::bind_template(uint32_t subject_row, std::string_view id, int64_t key) {
  bind_template(subject_row, id, hash_name(id), key);
}

void IdTable::bind_template(uint32_t subject_row, std::string_view id, uint64_t hash, int64_t key) {
  uint32_t row = template_by_id_.find(id, hash, template_id_of());
  uint32_t keyed = find_template_key(key);
  if (keyed != kNone && keyed != row) forget_template(keyed, true);  // the key named another template
  if (row != kNone) {
    if (template_key_[row] != key) {
      template_by_key_.erase(hash_key(template_key_[row]), row);
      template_key_[row] = key;
      template_by_key_.insert(hash_key(key), row);
    }
    if (template_owner_[row] != subject_row) {
      unlink(row);
      template_owner_[row] = subject_row;
      link(row);
    }
    compact_if_due();
    return;
  }
  if (template_key_.size() >= kNone) throw std::length_error("an id table holds at most 2^32 - 1 templates");
  row = static_cast<uint32_t>(template_key_.size());
  template_key_.push_back(key);
  template_at_.push_back(arena_.append(id));
  template_owner_.push_back(subject_row);
  template_next_.push_back(kNone);
  template_by_key_.insert(hash_key(key), row);
  template_by_id_.insert(hash, row);
  link(row);
  compact_if_due();
}

size_t IdTable::remove_subject(uint32_t subject_row) {
  size_t removed = 0;
  for (uint32_t at = subject_first_[subject_row]; at != kNone;) {
    uint32_t next = template_next_[at];
    forget_template(at, false);
    at = next;
    ++removed;
  }
  subject_first_[subject_row] = kNone;
  subject_by_key_.erase(hash_key(subject_key_[subject_row]), subject_row);
  subject_by_id_.erase(hash_name(subject_id(subject_row)), subject_row);
  arena_.scrub(subject_at_[subject_row]);
  subject_at_[subject_row] = kHole;
  subject_key_[subject_row] = -1;
  subject_tag_set_[subject_row] = kNone;
  ++subject_holes_;
  compact_if_due();
  return removed;
}

namespace {

// Bulk loops work on item i while the table entries of item i + kAhead are on their way to the cache.
constexpr size_t kAhead = 8;

std::string_view id_at(const char* blob, const uint64_t* offsets, size_t i) {
  if (offsets[i + 1] < offsets[i]) throw std::invalid_argument("id offsets must not decrease");
  return {blob + offsets[i], static_cast<size_t>(offsets[i + 1] - offsets[i])};
}

}  // namespace

void IdTable::add_subjects(const char* blob, const uint64_t* offsets, const int64_t* keys, const uint32_t* tag_sets,
                           size_t n) {
  uint64_t hashes[kAhead];
  auto ask = [&](size_t i) {
    hashes[i % kAhead] = hash_name(id_at(blob, offsets, i));
    subject_by_id_.prefetch(hashes[i % kAhead]);
    subject_by_key_.prefetch(hash_key(keys[i]));
  };
  for (size_t i = 0; i < std::min(n, kAhead); ++i) ask(i);
  for (size_t i = 0; i < n; ++i) {
    uint64_t hash = hashes[i % kAhead];
    if (i + kAhead < n) ask(i + kAhead);
    add_subject(id_at(blob, offsets, i), hash, keys[i], tag_sets[i]);
  }
}

size_t IdTable::bind_templates(const char* blob, const uint64_t* offsets, const int64_t* keys,
                               const int64_t* subject_keys, size_t n) {
  uint64_t hashes[kAhead];
  auto ask = [&](size_t i) {
    hashes[i % kAhead] = hash_name(id_at(blob, offsets, i));
    template_by_id_.prefetch(hashes[i % kAhead]);
    template_by_key_.prefetch(hash_key(keys[i]));
    if (i == 0 || subject_keys[i] != subject_keys[i - 1]) subject_by_key_.prefetch(hash_key(subject_keys[i]));
  };
  for (size_t i = 0; i < std::min(n, kAhead); ++i) ask(i);
  // A subject's templates usually come together: the last subject found is asked first.
  int64_t last_key = 0;
  uint32_t last_row = kNone;
  for (size_t i = 0; i < n; ++i) {
    uint64_t hash = hashes[i % kAhead];
    if (i + kAhead < n) ask(i + kAhead);
    if (last_row == kNone || subject_keys[i] != last_key) {
      last_row = find_subject_key(subject_keys[i]);
      last_key = subject_keys[i];
      if (last_row == kNone) return i;
    }
    uint64_t compactions = compactions_;
    bind_template(last_row, id_at(blob, offsets, i), hash, keys[i]);
    if (compactions_ != compactions) last_row = kNone;  // the rows were renumbered
  }
  return n;
}

void IdTable::export_subjects(std::vector<int64_t>& keys, std::vector<uint32_t>& tag_sets,
                              std::vector<uint64_t>& offsets, std::vector<uint8_t>& blob) const {
  size_t n = subject_count();
  keys.reserve(n);
  tag_sets.reserve(n);
  offsets.reserve(n + 1);
  offsets.push_back(0);
  for (size_t row = 0; row < subject_key_.size(); ++row) {
    if (subject_at_[row] == kHole) continue;
    std::string_view id = arena_.at(subject_at_[row]);
    keys.push_back(subject_key_[row]);
    tag_sets.push_back(subject_tag_set_[row]);
    blob.insert(blob.end(), id.begin(), id.end());
    offsets.push_back(blob.size());
  }
}

size_t IdTable::template_ids(const int64_t* keys, size_t n, std::vector<uint64_t>& offsets,
                             std::vector<uint8_t>& blob) const {
  offsets.reserve(n + 1);
  offsets.push_back(0);
  for (size_t i = 0; i < n; ++i) {
    uint32_t row = find_template_key(keys[i]);
    if (row == kNone) return i;
    std::string_view id = template_id(row);
    blob.insert(blob.end(), id.begin(), id.end());
    offsets.push_back(blob.size());
  }
  return n;
}

std::vector<int64_t> IdTable::subjects_with_tag_sets(const uint8_t* allowed, size_t count) const {
  std::vector<int64_t> keys;
  for (size_t row = 0; row < subject_key_.size(); ++row) {
    uint32_t tag_set = subject_tag_set_[row];
    if (subject_at_[row] != kHole && tag_set < count && allowed[tag_set] != 0) keys.push_back(subject_key_[row]);
  }
  if (!std::is_sorted(keys.begin(), keys.end())) std::sort(keys.begin(), keys.end());
  return keys;
}

void IdTable::compact_if_due() {
  size_t holes = subject_holes_ + template_holes_;
  if (holes > min_holes_ && holes * 2 > subject_key_.size() + template_key_.size()) compact();
}

void IdTable::compact() {
  // New row numbers: the live rows in order.
  std::vector<uint32_t> subject_row(subject_key_.size(), kNone), template_row(template_key_.size(), kNone);
  uint32_t live = 0;
  size_t id_bytes = 0;
  for (size_t row = 0; row < subject_key_.size(); ++row) {
    if (subject_at_[row] == kHole) continue;
    subject_row[row] = live++;
    id_bytes += IdArena::stored_size(subject_id(static_cast<uint32_t>(row)).size());
  }
  live = 0;
  for (size_t row = 0; row < template_key_.size(); ++row) {
    if (template_at_[row] == kHole) continue;
    template_row[row] = live++;
    id_bytes += IdArena::stored_size(template_id(static_cast<uint32_t>(row)).size());
  }
  auto renumbered = [](uint32_t row, const std::vector<uint32_t>& rows) { return row == kNone ? kNone : rows[row]; };

  IdArena arena;
  arena.reserve(id_bytes);
  size_t kept = 0;
  for (size_t row = 0; row < subject_key_.size(); ++row) {
    if (subject_at_[row] == kHole) continue;
    subject_key_[kept] = subject_key_[row];
    subject_at_[kept] = arena.append(arena_.at(subject_at_[row]));
    subject_first_[kept] = renumbered(subject_first_[row], template_row);
    subject_tag_set_[kept] = subject_tag_set_[row];
    ++kept;
  }
  for (auto* column : {&subject_first_, &subject_tag_set_}) column->resize(kept);
  subject_key_.resize(kept);
  subject_at_.resize(kept);
  kept = 0;
  for (size_t row = 0; row < template_key_.size(); ++row) {
    if (template_at_[row] == kHole) continue;
    template_key_[kept] = template_key_[row];
    template_at_[kept] = arena.append(arena_.at(template_at_[row]));
    template_owner_[kept] = renumbered(template_owner_[row], subject_row);
    template_next_[kept] = renumbered(template_next_[row], template_row);
    ++kept;
  }
  for (auto* column : {&template_owner_, &template_next_}) column->resize(kept);
  template_key_.resize(kept);
  template_at_.resize(kept);
  for (auto* column : {&subject_key_, &template_key_}) column->shrink_to_fit();
  for (auto* column : {&subject_at_, &template_at_}) column->shrink_to_fit();
  for (auto* column : {&subject_first_, &subject_tag_set_, &template_owner_, &template_next_}) column->shrink_to_fit();

  // The tables keep their entries where they are (keys and ids are unchanged), under the new row numbers.
  subject_by_key_.renumber([&](uint32_t row) { return subject_row[row]; });
  subject_by_id_.renumber([&](uint32_t row) { return subject_row[row]; });
  template_by_key_.renumber([&](uint32_t row) { return template_row[row]; });
  template_by_id_.renumber([&](uint32_t row) { return template_row[row]; });
  arena_.wipe();
  arena_ = std::move(arena);
  subject_holes_ = template_holes_ = 0;
  ++compactions_;
}

}  // namespace retailface
