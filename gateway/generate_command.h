// `tiergate generate`: runs the engine on one prompt and streams the text to the terminal.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace tiergate::gateway {

int run_generate(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

// The default model's path (fetched by tools/fetch_model.sh); TIERGATE_MODEL overrides it.
std::string default_model_path();

}  // namespace tiergate::gateway
