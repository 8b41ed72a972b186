// `tiergate serve [MODEL]` (the server) and `tiergate keys add` (API key management).
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace tiergate::gateway {

int run_serve(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int run_keys(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

// Writes a self-signed certificate for localhost / 127.0.0.1 (EC P-256, 1 year) to the two paths.
// Throws std::runtime_error.
void write_self_signed_certificate(const std::string& cert_path, const std::string& key_path);

}  // namespace tiergate::gateway
