#include "gateway/bench_engine_command.h"

#include <chrono>
#include <cstdio>
#include <sstream>

#include "engine/engine.h"
#include "engine/fifo_policy.h"
#include "gateway/cli_args.h"
#include "gateway/generate_command.h"
#include "kernels/cpu/cpu_isa.h"

namespace tiergate::gateway {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kUsage =
    "usage: tiergate bench-engine [--model PATH] [--batch 1,4,16,64] [--prompt-tokens 128]\n"
    "       [--gen-tokens 64] [--temperature 0] [--threads N] [--device auto|cpu|cuda] [--cuda-graphs]\n"
    "       [--json]\n"
    "--temperature above 0 samples (seeded, top_p 1: what OpenAI clients send by default)\n"
    "instead of decoding greedily.\n";

constexpr const char* kCorpus =
    "The history of computing is a story of abstraction. Early machines were programmed by wiring "
    "panels; later came stored programs, assemblers, compilers and operating systems. Each layer let "
    "people think less about the machine and more about the problem. Networks joined the machines, "
    "and the web joined the people. Today models trained on that record of human writing answer "
    "questions, translate, summarise and write code, and serving them cheaply and fairly to many "
    "users at once is an engineering problem of its own: memory for attention caches, batching of "
    "requests that arrive at random times, and scheduling that keeps every customer served. ";

struct Result {
  std::size_t batch = 0;
  double prefill_tps = 0, decode_tps = 0, waste = 0, prefill_s = 0, decode_s = 0;
};

// Distinct prompts of exactly `n` tokens (distinct so that the prefix cache cannot help).
std::vector<std::vector<engine::TokenId>> make_prompts(const engine::Tokenizer& tok, std::size_t count, std::size_t n) {
  std::string text;
  while (tok.encode(text, false).size() < n + 16) text += kCorpus;
  std::vector<std::vector<engine::TokenId>> prompts;
  for (std::size_t i = 0; i < count; ++i) {
    auto ids = tok.encode("Request " + std::to_string(i) + ": " + text, false);
    ids.resize(n);
    prompts.push_back(std::move(ids));
  }
  return prompts;
}

Result run_batch(const engine::Model& model, std::size_t batch, std::size_t prompt_tokens, std::size_t gen_tokens,
                 float temperature, std::size_t threads, engine::Device device, bool cuda_graphs) {
  engine::EngineConfig config;
  config.threads = threads;
  config.device = device;
  config.cuda_graphs = cuda_graphs;
  config.max_running = batch;
  config.token_budget = std::max<std::size_t>(512, batch);
  config.num_blocks = batch * ((prompt_tokens + gen_tokens) / config.block_size + 2) + 4;
  engine::FifoPolicy fifo;
  std::size_t first_tokens = 0;
  Clock::time_point t_first{};
  double waste_sum = 0;
  std::size_t waste_samples = 0;
  engine::Engine* eng_ptr = nullptr;
  engine::Engine eng(model, config, fifo, [&](engine::RequestOutput&& o) {
    if (o.completion_tokens == 1 && o.index == 0 && ++first_tokens == batch) t_first = Clock::now();
    (void)eng_ptr;
  });
  eng_ptr = &eng;
  engine::SamplingParams p;
  p.temperature = temperature;
  p.seed = 1;
  p.max_tokens = static_cast<std::int64_t>(gen_tokens);
  p.ignore_eos = true;
  const auto prompts = make_prompts(model.tokenizer(), batch, prompt_tokens);
  const auto t0 = Clock::now();
  for (std::size_t i = 0; i < batch; ++i) {
    eng.submit({i + 1, prompts[i], p});
    fifo.enqueue(i + 1, prompt_tokens);
  }
  while (!eng.idle()) {
    eng.step();
    if (first_tokens == batch) {
      const auto st = eng.stats().blocks;
      if (st.allocated_slots > 0) {
        waste_sum += static_cast<double>(st.allocated_slots - st.used_slots) / static_cast<double>(st.allocated_slots);
        ++waste_samples;
      }
    }
  }
  const auto t_end = Clock::now();
  Result r;
  r.batch = batch;
  r.prefill_s = std::chrono::duration<double>(t_first - t0).count();
  r.decode_s = std::chrono::duration<double>(t_end - t_first).count();
  r.prefill_tps = static_cast<double>(batch * prompt_tokens) / r.prefill_s;
  r.decode_tps = static_cast<double>(batch * (gen_tokens - 1)) / r.decode_s;
  r.waste = waste_samples ? waste_sum / static_cast<double>(waste_samples) : 0;
  return r;
}

}  // namespace

int run_bench_engine(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  try {
    const CliArgs a(args, {"--model", "--batch", "--prompt-tokens", "--gen-tokens", "--temperature", "--threads", "--device"},
                    {"--json", "--cuda-graphs"});
    const auto model = engine::Model::load(a.get("--model", default_model_path()));
    const auto prompt_tokens = a.count("--prompt-tokens", 128);
    const auto gen_tokens = a.count("--gen-tokens", 64);
    const auto threads = a.count("--threads", 0);
    if (prompt_tokens < 1 || gen_tokens < 2) throw CliError("--prompt-tokens must be >= 1 and --gen-tokens >= 2");
    const auto temperature = static_cast<float>(a.number("--temperature", 0.0));
    if (!(temperature >= 0.0f && temperature <= 2.0f)) throw CliError("--temperature takes a number in [0, 2]");
    std::vector<std::size_t> batches;
    std::stringstream list(a.get("--batch", "1,4,16,64"));
    for (std::string item; std::getline(list, item, ',');) {
      const long long b = std::atoll(item.c_str());
      if (b < 1) throw CliError("--batch takes a comma-separated list of positive sizes");
      batches.push_back(static_cast<std::size_t>(b));
    }
    const bool json = a.has("--json");
    // Every benchmark names the CPU and the kernels' ISA level (TIERGATE_CPU_ISA forces one).
    const std::string isa = kernels::cpu::isa_name(kernels::cpu::active_isa());
    if (!json) {
      out << "cpu " << kernels::cpu::describe_cpu() << "\n";
      out << "model " << model->config().name << ", " << prompt_tokens << " prompt tokens, " << gen_tokens
          << " generated tokens per request, "
          << (temperature > 0 ? "sampled at temperature " + a.get("--temperature", "") : std::string("greedy")) << "\n";
      out << "batch  prefill_tok/s  decode_tok/s  decode_ms/step  kv_waste\n";
    }
    for (std::size_t b : batches) {
      const Result r = run_batch(*model, b, prompt_tokens, gen_tokens, temperature, threads, device_flag(a), a.has("--cuda-graphs"));
      char line[256];
      if (json) {
        std::snprintf(line, sizeof line,
                      "{\"batch\": %zu, \"prefill_tps\": %.1f, \"decode_tps\": %.1f, \"kv_waste\": %.4f, \"isa\": \"%s\"}\n",
                      b, r.prefill_tps, r.decode_tps, r.waste, isa.c_str());
      } else {
        std::snprintf(line, sizeof line, "%5zu  %13.1f  %12.1f  %14.2f  %7.2f%%\n", b, r.prefill_tps, r.decode_tps,
                      1e3 * r.decode_s / static_cast<double>(gen_tokens - 1), 100 * r.waste);
      }
      out << line << std::flush;
    }
    return 0;
  } catch (const CliError& e) {
    err << "tiergate bench-engine: " << e.what() << "\n" << kUsage;
    return 2;
  } catch (const std::exception& e) {
    err << "tiergate bench-engine: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace tiergate::gateway
