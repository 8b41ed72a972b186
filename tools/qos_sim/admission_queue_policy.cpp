#include "tools/qos_sim/admission_queue_policy.h"

namespace tiergate::qos_sim {

qos::Clock::time_point AdmissionQueuePolicy::at(double seconds) {
  return qos::Clock::time_point(
      std::chrono::duration_cast<qos::Clock::duration>(std::chrono::duration<double>(seconds)));
}

bool AdmissionQueuePolicy::enqueue(const SimRequest& request, double now_s) {
  const qos::EnqueueResult result = queue_.enqueue(
      {request.id, request.user, request.prompt_tokens, request.output_tokens}, at(now_s));
  return result.status == qos::EnqueueStatus::kQueued;
}

std::optional<std::uint64_t> AdmissionQueuePolicy::next(double now_s) {
  if (auto admission = queue_.next(at(now_s))) return admission->id;
  return std::nullopt;
}

}  // namespace tiergate::qos_sim
