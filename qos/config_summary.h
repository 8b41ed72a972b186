// The operator's one-screen view of a config: groups in priority order, their users with
// normalised shares, where unknown users go, token weights and queue bounds. Printed by
// `tiergate qos check FILE` and logged on every successful reload. Pure.
#pragma once

#include <string>

#include "qos/config.h"

namespace tiergate::qos {

std::string summarize(const Config& config);

}  // namespace tiergate::qos
