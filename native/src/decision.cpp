#include "retailface/decision.hpp"

#include <algorithm>

namespace retailface {

Decision decide(const TopSubjects& best, float threshold, float margin) {
  const auto& ranked = best.entries();
  if (ranked.empty() || !(ranked[0].score >= threshold)) return Decision::kNoMatch;
  float second = ranked.size() > 1 ? ranked[1].score : -2.f;
  return ranked[0].score - second >= margin ? Decision::kMatch : Decision::kAmbiguous;
}

void report(const TopSubjects& best, Plan plan, float threshold, float margin, SearchOutput& out, size_t row) {
  const auto& ranked = best.entries();
  size_t keep = std::min(out.top_k, ranked.size());
  for (size_t i = 0; i < keep; ++i) {
    out.subjects[row * out.top_k + i] = ranked[i].subject;
    out.template_ids[row * out.top_k + i] = ranked[i].template_id;
    out.scores[row * out.top_k + i] = ranked[i].score;
  }
  out.decisions[row] = static_cast<int8_t>(decide(best, threshold, margin));
  out.plans[row] = static_cast<int8_t>(plan);
}

}  // namespace retailface
