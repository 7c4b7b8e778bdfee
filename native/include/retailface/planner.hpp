// The planner: each query's plan, from the size of what it may see.
//   - exact scan over every live slot when the gallery is small,
//   - exact scan over the allowed subjects' slots when a filter selects few templates (the int8 scan),
//   - filtered hnswlib graph search (the filter inside the graph walk) when it selects many and the graph
//     is preferred, the code scan over the allowed slots otherwise,
//   - for a large unfiltered gallery: an exhaustive scan of the sign codes with a float re-rank of
//     the nearest (default), or the hnswlib graph.
// A filter is never applied to a top-k after the fact, which would silently lose subjects.
#pragma once

#include <cstddef>
#include <optional>

#include "retailface/gallery_types.hpp"

namespace retailface {

// `live`: templates in the gallery; `allowed`: templates a filter selects (nullopt: no filter).
Plan choose_plan(const GalleryParams& params, size_t live, std::optional<size_t> allowed);

}  // namespace retailface
