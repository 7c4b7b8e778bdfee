#include "retailface/planner.hpp"

namespace retailface {

Plan choose_plan(const GalleryParams& params, size_t live, std::optional<size_t> allowed) {
  if (live == 0 || (allowed.has_value() && *allowed == 0)) return Plan::kEmpty;
  if (allowed.has_value()) {
    if (*allowed <= params.filtered_scan_below || live <= params.exact_below) return Plan::kFilteredScan;
    if (params.graph_for_global) {
      // A filtered graph walk visits about ef * M / selectivity nodes before it has ef allowed ones; an exact
      // scan visits the allowed templates once. Scan while allowed^2 <= ef * M * live (32k templates of 1M).
      double wide = static_cast<double>(*allowed);
      return wide * wide <= static_cast<double>(params.ef_search * params.M) * static_cast<double>(live) ? Plan::kFilteredScan
                                                                                                        : Plan::kFilteredGraph;
    }
    // Exact while it is about as cheap as the code scan (params.filtered_scan_share); wider, the code scan.
    return *allowed * params.filtered_scan_share <= live ? Plan::kFilteredScan : Plan::kFilteredCodeScan;
  }
  if (live <= params.exact_below) return Plan::kExactScan;
  return params.graph_for_global ? Plan::kGraph : Plan::kCodeScan;
}

}  // namespace retailface
