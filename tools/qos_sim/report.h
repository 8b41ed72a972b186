// Side-by-side text tables of simulation results (one column block per policy), for the terminal
// and for issue notes.
#pragma once

#include <string>
#include <vector>

#include "tools/qos_sim/simulator.h"

namespace tiergate::qos_sim {

std::string side_by_side(const std::vector<SimResult>& results, const qos::Config& config);

}  // namespace tiergate::qos_sim
