// bench-fleet-store: what one fleet sync costs Redis, to say how far the design scales (README,
// "Running a fleet"). For reports of 1 to 1000 user entries it makes scripted sync calls from ten
// rotating replica ids against the Redis at --redis-url and prints the client's round trip and
// Redis's own time per call (INFO commandstats, evalsha), hence how many calls and entries per
// second one Redis core folds in. tools/bench_fleet_store.sh starts a throwaway redis-server for it.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "gateway/fleet_store.h"
#include "gateway/redis_connection.h"

using namespace tiergate;

namespace {

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string model = "unknown", isa = "scalar";
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0 && model == "unknown") model = line.substr(line.find(':') + 2);
    if (line.rfind("flags", 0) == 0) {
      if (line.find(" avx512f") != std::string::npos) isa = "AVX-512";
      else if (line.find(" avx2") != std::string::npos) isa = "AVX2";
      break;
    }
  }
  return model + ", " + isa;
}

double evalsha_usec_per_call(gateway::RedisConnection& redis) {
  const gateway::RedisResult r = redis.command({"INFO", "commandstats"});
  if (r.failure != gateway::RedisResult::Failure::kNone) return -1;
  const std::string& text = r.replies[0].str;
  const auto at = text.find("cmdstat_evalsha:");
  if (at == std::string::npos) return -1;
  const auto usec = text.find("usec_per_call=", at);
  return std::stod(text.substr(usec + 14));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench-fleet-store redis://127.0.0.1:PORT/0\n");
    return 2;
  }
  gateway::RedisConnection redis(gateway::RedisUrl::parse(argv[1]), std::chrono::milliseconds(2000));
  gateway::FleetStoreOptions options;
  options.prefix = "bench";
  gateway::FleetStore store(redis, options);
  std::printf("cpu: %s (Redis single-threaded; the script's cost does not depend on the ISA)\n", cpu_model().c_str());
  std::printf("%8s %8s %14s %16s %18s %20s\n", "entries", "calls", "client_rt_us", "redis_us_per_call",
              "calls_per_s_core", "entries_per_s_core");
  std::uint64_t seq = 0;
  for (int entries : {1, 10, 100, 1000}) {
    qos::FleetReport report;
    for (int u = 0; u < entries; ++u) {
      qos::FleetUserReport e;
      e.group = "Gold";
      e.user = "user" + std::to_string(u);
      e.op.then_add(1.5);
      e.served.weighted_tokens = 3;
      e.served.output_tokens = 1;
      e.active = true;
      report.users.push_back(e);
    }
    for (const char* g : {"Platinum", "Gold", "Silver", "Bronze"}) {
      report.clocks.push_back({g, false, 100, 90});
      report.clocks.push_back({g, true, 100, 90});
      report.loads.push_back({g, 2});
    }
    const int calls = entries >= 1000 ? 200 : entries >= 100 ? 1000 : 3000;
    redis.command({"CONFIG", "RESETSTAT"});
    const auto began = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i) {
      const gateway::FleetAnswer a = store.sync("replica-" + std::to_string(i % 10), ++seq, report, "cfg");
      if (a.failure != gateway::RedisResult::Failure::kNone) {
        std::fprintf(stderr, "bench-fleet-store: %s\n", a.error.c_str());
        return 1;
      }
    }
    const double wall_us =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - began).count() / calls;
    const double redis_us = evalsha_usec_per_call(redis);
    std::printf("%8d %8d %14.1f %16.1f %18.0f %20.0f\n", entries, calls, wall_us, redis_us, 1e6 / redis_us,
                1e6 / redis_us * entries);
  }
  redis.command({"FLUSHDB"});
  return 0;
}
