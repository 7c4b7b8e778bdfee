// The names of one gallery's keys, for the matching service (its SubjectIndex): subject and template
// ids (UTF-8 strings, as the API gives them) <-> the int64 keys of the native index, the subject each template
// belongs to, each subject's templates, and each subject's tag set as a small number (the service keeps the few
// distinct tag sets themselves).
//
// Compact: the ids' bytes lie end to end in one arena (IdArena: a varint length, then the bytes), not one heap
// object per id. A subject and a template are each a row of a few arrays: key, arena offset, and for a subject
// its first template and tag set, for a template its subject and the subject's next template (a subject's
// templates are a chain through its rows, as the gallery's slots are). Four open-addressing tables of row
// numbers (row_table.hpp, 8-byte entries tagged with hash bits) find a row by key or by id. About 45 bytes per
// subject and per template, plus the ids' bytes.
//
// Rows are appended in order; removing one leaves a hole, its id's bytes zeroed in the arena at once (erasure
// leaves no id behind), until holes outnumber live rows: then the arrays, the arena and the tables are rebuilt
// without them, rows keeping their order. Keys grow with every enroll, so rows stay in key order in practice
// and the subjects of a tag filter come out sorted (sorted anyway when they are not).
//
// Not synchronised by itself: the binding serialises changes against reads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "retailface/row_table.hpp"

namespace retailface {

// Strings end to end, each after its length (LEB128), addressed by offset. Growing copies them into a buffer twice
// the size and zeroes the old one before freeing it; `scrub` zeroes one in place. Not-yet-used capacity is not
// written, so it costs address space, not memory, until used.
class IdArena {
 public:
  IdArena() = default;
  IdArena(IdArena&&) noexcept = default;
  IdArena& operator=(IdArena&&) noexcept = default;
  ~IdArena() = default;

  uint64_t append(std::string_view id);
  std::string_view at(uint64_t offset) const;
  void scrub(uint64_t offset);  // the string at `offset` (and its length) becomes zeros
  void reserve(size_t more);     // room for `more` bytes (lengths included) beyond what is used
  void wipe();                   // every byte used so far becomes zero
  size_t used() const { return used_; }
  const char* data() const { return data_.get(); }
  size_t capacity() const { return capacity_; }
  static size_t stored_size(size_t length);  // bytes one string of `length` bytes takes

 private:
  void grow_to(size_t capacity);
  std::unique_ptr<char[]> data_;
  size_t used_ = 0, capacity_ = 0;
};

class IdTable {
  // Keys and ids of rows, for the tables (defined first: the lookups below deduce their types).
  auto subject_key_of() const {
    return [this](uint32_t row) { return subject_key_[row]; };
  }
  auto template_key_of() const {
    return [this](uint32_t row) { return template_key_[row]; };
  }
  auto subject_id_of() const {
    return [this](uint32_t row) { return arena_.at(subject_at_[row]); };
  }
  auto template_id_of() const {
    return [this](uint32_t row) { return arena_.at(template_at_[row]); };
  }

 public:
  static constexpr uint32_t kNone = RowTable::kNone;

  // A table rebuilds itself without its holes when they are over `min_holes` and outnumber its live rows.
  explicit IdTable(size_t min_holes = 4096) : min_holes_(min_holes) {}

  size_t subject_count() const { return subject_key_.size() - subject_holes_; }
  size_t template_count() const { return template_key_.size() - template_holes_; }
  size_t holes() const { return subject_holes_ + template_holes_; }
  uint64_t compactions() const { return compactions_; }
  size_t bytes() const;
  const IdArena& arena() const { return arena_; }  // (tests: what erasure leaves in memory)

  // Rows by id or key, kNone when there is none.
  uint32_t find_subject(std::string_view id) const { return subject_by_id_.find(id, hash_name(id), subject_id_of()); }
  uint32_t find_subject_key(int64_t key) const { return subject_by_key_.find(key, hash_key(key), subject_key_of()); }
  uint32_t find_template(std::string_view id) const { return template_by_id_.find(id, hash_name(id), template_id_of()); }
  uint32_t find_template_key(int64_t key) const {
    return template_by_key_.find(key, hash_key(key), template_key_of());
  }

  // A live row's fields.
  std::string_view subject_id(uint32_t row) const { return arena_.at(subject_at_[row]); }
  int64_t subject_key(uint32_t row) const { return subject_key_[row]; }
  uint32_t tag_set(uint32_t row) const { return subject_tag_set_[row]; }
  uint32_t first_template(uint32_t subject_row) const { return subject_first_[subject_row]; }
  std::string_view template_id(uint32_t row) const { return arena_.at(template_at_[row]); }
  int64_t template_key(uint32_t row) const { return template_key_[row]; }
  uint32_t owner(uint32_t template_row) const { return template_owner_[template_row]; }
  uint32_t next_template(uint32_t template_row) const { return template_next_[template_row]; }
  size_t templates_of(uint32_t subject_row) const;

  // A new subject; std::invalid_argument when its id or its key is already a subject's.
  uint32_t add_subject(std::string_view id, int64_t key, uint32_t tag_set);
  void set_tag_set(uint32_t subject_row, uint32_t tag_set) { subject_tag_set_[subject_row] = tag_set; }
  // Binds template `id` under `key` to the subject. The later binding wins, as in the gallery (re-adding a key
  // replaces its template): an id already bound takes the new key and subject, and another template that had
  // the key is forgotten.
  void bind_template(uint32_t subject_row, std::string_view id, int64_t key);
  // Forgets the subject and its templates (their ids zeroed); returns how many templates it had.
  size_t remove_subject(uint32_t subject_row);

  // Room for this many more subjects, templates and bytes of ids without growing.
  void reserve(size_t subjects, size_t templates, size_t id_bytes);
  // Bulk forms (a snapshot's): id i is blob[offsets[i], offsets[i + 1]).
  // add_subject for each; std::invalid_argument (nothing of that subject or after it added) as add_subject.
  void add_subjects(const char* blob, const uint64_t* offsets, const int64_t* keys, const uint32_t* tag_sets, size_t n);
  // bind_template for each, the subject given by key; returns n, or the index of the first template whose
  // subject key no subject has (the templates before it are bound, none after).
  size_t bind_templates(const char* blob, const uint64_t* offsets, const int64_t* keys, const int64_t* subject_keys,
                        size_t n);

  // The live subjects in row order: keys, tag sets, ids (offsets n + 1, blob).
  void export_subjects(std::vector<int64_t>& keys, std::vector<uint32_t>& tag_sets, std::vector<uint64_t>& offsets,
                       std::vector<uint8_t>& blob) const;
  // The ids of the templates of `keys`, as offsets n + 1 and blob; returns n, or the index of the first key that no
  // template has.
  size_t template_ids(const int64_t* keys, size_t n, std::vector<uint64_t>& offsets, std::vector<uint8_t>& blob) const;
  // The keys of the subjects whose tag set t has allowed[t] != 0 (t < count), sorted.
  std::vector<int64_t> subjects_with_tag_sets(const uint8_t* allowed, size_t count) const;

 private:
  static constexpr uint64_t kHole = ~uint64_t{0};  // the arena offset of a removed row

  uint32_t add_subject(std::string_view id, uint64_t id_hash, int64_t key, uint32_t tag_set);
  void bind_template(uint32_t subject_row, std::string_view id, uint64_t id_hash, int64_t key);
  void link(uint32_t template_row);    // first of its owner's chain
  void unlink(uint32_t template_row);  // out of its owner's chain
  void forget_template(uint32_t template_row, bool unlink_it);
  void compact_if_due();
  void compact();

  size_t min_holes_;
  IdArena arena_;
  std::vector<int64_t> subject_key_;
  std::vector<uint64_t> subject_at_;  // arena offset of the id, kHole for a removed subject
  std::vector<uint32_t> subject_first_, subject_tag_set_;
  std::vector<int64_t> template_key_;
  std::vector<uint64_t> template_at_;
  std::vector<uint32_t> template_owner_, template_next_;
  size_t subject_holes_ = 0, template_holes_ = 0;
  uint64_t compactions_ = 0;  // row numbers change with each
  RowTable subject_by_key_, template_by_key_, subject_by_id_, template_by_id_;
};

}  // namespace retailface
