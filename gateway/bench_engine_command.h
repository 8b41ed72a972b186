// `tiergate bench-engine`: prefill and decode tokens/s of the embedded engine at several batch
// sizes, and the KV cache's waste (allocated but unused slots / allocated slots) during decode.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace tiergate::gateway {

int run_bench_engine(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace tiergate::gateway
