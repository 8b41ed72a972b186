// `tiergate qos check FILE`: validates a QoS config the way the server would load it (like
// `nginx -t`). Exit 0 and the one-screen summary for a good file; exit 1 and every problem, one per
// line, for a bad one; exit 2 for a usage error. Writes only to the given streams.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace tiergate::gateway {

int run_qos_check(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace tiergate::gateway
