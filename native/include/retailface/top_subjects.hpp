// The `capacity` best distinct subjects a search has seen so far, best first (ties: lower subject id
// first). Every scan offers its templates here; the decision reads the result.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace retailface {

class TopSubjects {
 public:
  struct Entry {
    int64_t subject;
    int64_t template_id;
    float score;
  };

  explicit TopSubjects(size_t capacity) : capacity_(capacity) { entries_.reserve(capacity + 1); }

  // O(capacity) per template that beats the current floor, one comparison otherwise. A subject pushed
  // out by `capacity` better subjects can never be among the best, so forgetting it loses nothing.
  void offer(int64_t subject, int64_t template_id, float score) {
    if (entries_.size() == capacity_ && !better(score, subject, entries_.back())) return;
    size_t at = entries_.size();
    for (size_t i = 0; i < entries_.size(); ++i) {
      if (entries_[i].subject == subject) {
        if (!(score > entries_[i].score)) return;
        at = i;
        break;
      }
    }
    if (at == entries_.size()) {
      if (entries_.size() == capacity_) at = capacity_ - 1;
      else entries_.push_back({});
    }
    entries_[at] = {subject, template_id, score};
    while (at > 0 && better(entries_[at].score, entries_[at].subject, entries_[at - 1])) {
      std::swap(entries_[at], entries_[at - 1]);
      --at;
    }
  }

  const std::vector<Entry>& entries() const { return entries_; }
  size_t capacity() const { return capacity_; }
  // The score every one of the `capacity` best subjects is sure to reach (-inf until there are that many).
  float floor() const {
    return entries_.size() == capacity_ ? entries_.back().score : -std::numeric_limits<float>::infinity();
  }

 private:
  static bool better(float score, int64_t subject, const Entry& other) {
    return score > other.score || (score == other.score && subject < other.subject);
  }
  size_t capacity_;
  std::vector<Entry> entries_;
};

}  // namespace retailface
