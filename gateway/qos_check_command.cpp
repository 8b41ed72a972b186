#include "gateway/qos_check_command.h"

#include "qos/config_parser.h"
#include "qos/config_summary.h"

namespace tiergate::gateway {

int run_qos_check(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  if (args.size() != 1) {
    err << "usage: tiergate qos check FILE\n";
    return 2;
  }
  const qos::ConfigParseResult result = qos::load_config_file(args[0]);
  if (!result.ok()) {
    err << result.describe();
    err << args[0] << ": " << result.errors.size() << " problem"
        << (result.errors.size() == 1 ? "" : "s") << "; the file would be rejected\n";
    return 1;
  }
  out << args[0] << ": OK\n" << qos::summarize(*result.config);
  return 0;
}

}  // namespace tiergate::gateway
