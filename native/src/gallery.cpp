#include "retailface/gallery.hpp"

#include <algorithm>
#include <chrono>
#include <mutex>
#include <stdexcept>

#include "retailface/decision.hpp"
#include "retailface/parallel.hpp"
#include "retailface/planner.hpp"
#include "retailface/quantize.hpp"

namespace retailface {

namespace {

// The parameters as the gallery uses them: capacity in whole code blocks, at least one thread.
GalleryParams normalized(GalleryParams params) {
  if (params.dim == 0) throw std::invalid_argument("dim must be positive");
  params.capacity = std::max<size_t>(params.capacity, 16);
  params.capacity = (params.capacity + kernels::kLanes - 1) / kernels::kLanes * kernels::kLanes;
  params.threads = std::max<size_t>(params.threads, 1);
  params.candidate_divisor = std::max<size_t>(params.candidate_divisor, 1);
  params.first_pass_divisor = std::max<size_t>(params.first_pass_divisor, 1);
  params.first_pass_share = std::max<size_t>(params.first_pass_share, 1);
  params.filtered_scan_share = std::max<size_t>(params.filtered_scan_share, 1);
  params.hnsw_graph = params.hnsw_graph || params.graph_for_global;  // the graph plans need one from the start
  return params;
}

}  // namespace

Gallery::Gallery(const GalleryParams& params) : params_(normalized(params)), slots_(params_), coder_(params_.dim) {}

void Gallery::add(const int64_t* template_ids, const int64_t* subject_ids, const float* vectors, size_t n) {
  std::unique_lock lock(mutex_);
  ++version_;
  // Book-keeping first, serially; then the stored form, codes (and graph inserts) for the new slots on every
  // thread. The code and the graph see the stored form, not the float vector: a gallery restored from its
  // stored templates is then the same gallery.
  auto inserted = slots_.assign(template_ids, subject_ids, n);
  const size_t dim = params_.dim;
  parallel_for(params_.threads, inserted.size(), [&](size_t i) {
    auto [slot, row] = inserted[i];
    thread_local std::vector<int8_t> stored;
    thread_local std::vector<float> restored;
    stored.resize(dim);
    restored.resize(dim);
    Rounded rounded = round_to_int8(vectors + row * dim, dim, stored.data());
    restore_int8(stored.data(), rounded.scale, dim, restored.data());
    uint64_t code[kCodeWords];
    coder_.encode(restored.data(), code);
    slots_.store(slot, stored.data(), rounded.scale, code, restored.data());
  });
}

void Gallery::restore(const int64_t* template_ids, const int64_t* subject_ids, const int8_t* rows, const float* scales,
                      const uint64_t* codes, size_t n) {
  std::unique_lock lock(mutex_);
  ++version_;
  auto inserted = slots_.assign(template_ids, subject_ids, n);
  parallel_for(params_.threads, inserted.size(), [&](size_t i) {
    auto [slot, row] = inserted[i];
    slots_.store(slot, rows + row * params_.dim, scales[row], codes + row * kCodeWords, nullptr);
  });
}

size_t Gallery::remove(const int64_t* template_ids, size_t n) {
  std::unique_lock lock(mutex_);
  ++version_;
  return slots_.remove(template_ids, n);
}

size_t Gallery::remove_subject(int64_t subject_id) {
  std::unique_lock lock(mutex_);
  ++version_;
  return slots_.remove_subject(subject_id);
}

std::shared_ptr<const FilterEntry> Gallery::filter_for(const int64_t* allowed, size_t allowed_count) const {
  // Called under the shared lock, so version_ and the slot tables are stable here.
  auto cached = filters_.find(allowed, allowed_count, version_);
  if (cached) return cached;
  auto entry = make_filter(slots_, params_, version_, allowed, allowed_count);
  filters_.keep(entry);
  return entry;
}

void Gallery::scan_codes(const float* queries, size_t count, TopSubjects* best, const FilterEntry* filter,
                         size_t shards) const {
  // With a filter, only its slots are searchable (its mask); without, every live slot.
  if (filter != nullptr) code_scan(slots_, coder_, params_, queries, count, best, &filter->mask, filter->slots.size(), shards);
  else code_scan(slots_, coder_, params_, queries, count, best, nullptr, slots_.live_count(), shards);
}

void Gallery::collect(Plan plan, const float* query, size_t top_k, const FilterEntry* filter, TopSubjects& best) const {
  switch (plan) {
    case Plan::kEmpty:
      return;
    case Plan::kFilteredScan:
      int8_scan(slots_, filter->slots, filter->rows, params_.dim, query, best);
      return;
    case Plan::kExactScan:
      for (size_t slot = 0; slot < slots_.used(); ++slot)
        if (slots_.live(slot)) best.offer(slots_.subject_of(slot), slots_.template_of(slot), slots_.similarity(slot, query));
      return;
    case Plan::kCodeScan:
    case Plan::kFilteredCodeScan:
      scan_codes(query, 1, &best, filter, 1);
      return;
    case Plan::kGraph:
    case Plan::kFilteredGraph: {
      // Several templates per subject: ask the graph for more templates than subjects wanted.
      size_t k = std::min(slots_.live_count(), std::max<size_t>(top_k * 8, 32));
      slots_.graph_search(query, k, filter != nullptr ? &filter->subjects : nullptr, best);
      return;
    }
  }
}

SearchOutput Gallery::search(const float* queries, size_t n, size_t top_k, float threshold, float margin,
                             const int64_t* allowed, size_t allowed_count) const {
  if (top_k == 0) throw std::invalid_argument("top_k must be positive");
  SearchOutput out;
  out.n = n;
  out.top_k = top_k;
  out.subjects.assign(n * top_k, -1);
  out.template_ids.assign(n * top_k, -1);
  out.scores.assign(n * top_k, 0.f);
  out.decisions.assign(n, static_cast<int8_t>(Decision::kNoMatch));
  out.plans.assign(n, static_cast<int8_t>(Plan::kEmpty));

  std::shared_lock lock(mutex_);
  std::shared_ptr<const FilterEntry> filter;
  if (allowed != nullptr) filter = filter_for(allowed, allowed_count);
  Plan plan = filter ? filter->plan : choose_plan(params_, slots_.live_count(), std::nullopt);
  // Queries go in groups (of up to kMaxQueries for the code scan, which reads the codes once per group);
  // groups are shared out to the workers as they finish.
  bool grouped = plan == Plan::kCodeScan || plan == Plan::kFilteredCodeScan;
  size_t group = grouped ? kernels::kMaxQueries : 1;
  size_t groups = (n + group - 1) / group;
  // Fewer groups than threads (a single search): each group's pass is split over the idle threads.
  size_t shards = grouped && groups < params_.threads ? params_.threads / groups : 1;
  parallel_for(params_.threads, groups, [&](size_t g) {
    size_t begin = g * group, end = std::min(n, begin + group);
    // Two subjects at least: the decision looks at the runner-up even when top_k is 1.
    std::vector<TopSubjects> best(end - begin, TopSubjects(std::max<size_t>(top_k, 2)));
    if (grouped) {
      scan_codes(queries + begin * params_.dim, end - begin, best.data(), filter.get(), shards);
    } else {
      for (size_t row = begin; row < end; ++row) collect(plan, queries + row * params_.dim, top_k, filter.get(), best[row - begin]);
    }
    for (size_t row = begin; row < end; ++row) report(best[row - begin], plan, threshold, margin, out, row);
  });
  return out;
}

size_t Gallery::size() const {
  std::shared_lock lock(mutex_);
  return slots_.live_count();
}

size_t Gallery::subject_count() const {
  std::shared_lock lock(mutex_);
  return slots_.subject_count();
}

MemoryParts Gallery::memory() const {
  std::shared_lock lock(mutex_);
  MemoryParts parts = slots_.memory();
  parts.filters = filters_.bytes();
  return parts;
}

double Gallery::graph_build_seconds() const {
  std::shared_lock lock(mutex_);
  return graph_build_seconds_;
}

GalleryParams Gallery::params() const {
  std::shared_lock lock(mutex_);
  GalleryParams params = params_;
  params.capacity = slots_.capacity();
  return params;
}

void Gallery::set_threads(size_t threads) {
  std::unique_lock lock(mutex_);
  params_.threads = std::max<size_t>(threads, 1);
}

void Gallery::set_ef(size_t ef) {
  std::unique_lock lock(mutex_);
  params_.ef_search = ef;
  slots_.set_ef(ef);
  ++version_;  // a cached filter's plan depends on ef
}

void Gallery::set_candidates(size_t min_candidates, size_t candidate_divisor) {
  std::unique_lock lock(mutex_);
  params_.min_candidates = std::max<size_t>(min_candidates, 1);
  params_.candidate_divisor = std::max<size_t>(candidate_divisor, 1);
}

void Gallery::set_first_pass(size_t divisor, size_t share) {
  std::unique_lock lock(mutex_);
  params_.first_pass_divisor = std::max<size_t>(divisor, 1);
  params_.first_pass_share = std::max<size_t>(share, 1);
}

void Gallery::set_filtered_scan_share(size_t share) {
  std::unique_lock lock(mutex_);
  params_.filtered_scan_share = std::max<size_t>(share, 1);
  ++version_;  // a cached filter's plan depends on it
}

void Gallery::ensure_graph() {
  for (;;) {
    uint64_t seen;
    Slots::Graph graph;
    auto start = std::chrono::steady_clock::now();
    {
      std::shared_lock lock(mutex_);
      if (slots_.has_graph()) return;
      seen = version_;
      graph = slots_.build_graph(params_);
    }
    std::unique_lock lock(mutex_);
    if (slots_.has_graph()) return;  // another caller installed one meanwhile
    if (version_ != seen) continue;  // the gallery changed during the build: build again from what it holds now
    slots_.install_graph(std::move(graph));
    params_.hnsw_graph = true;
    graph_build_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return;
  }
}

void Gallery::set_graph_for_global(bool graph) {
  if (graph) ensure_graph();  // a graph, once there, stays: nothing below can remove it
  std::unique_lock lock(mutex_);
  params_.graph_for_global = graph;
  ++version_;  // so does a cached filter's plan
}

StoredTemplates Gallery::stored() const {
  std::shared_lock lock(mutex_);
  StoredTemplates out;
  slots_.copy_live(out);
  return out;
}

}  // namespace retailface
