// The decision on a query's best subjects, and the row of the search output that reports it.
#pragma once

#include <cstddef>

#include "retailface/gallery_types.hpp"
#include "retailface/top_subjects.hpp"

namespace retailface {

// MATCH when the best subject reaches `threshold` and leads the second by `margin` at least; AMBIGUOUS
// when it reaches the threshold without that lead; NO_MATCH otherwise.
Decision decide(const TopSubjects& best, float threshold, float margin);

// Writes row `row` of `out`: the top_k best subjects, their templates and scores, the decision, the plan.
void report(const TopSubjects& best, Plan plan, float threshold, float margin, SearchOutput& out, size_t row);

}  // namespace retailface
