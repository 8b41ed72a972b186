// Constrained decoding's cost: generated tokens per second on the real engine with and without a
// JSON schema (response_format json_schema), side by side in one run, at batch 1 and 16 (or
// --batch). Each batch size runs closed-loop: `batch` requests in flight, a new one submitted as
// soon as one finishes, until --requests have finished, so the batch stays full even though
// constrained answers end when their JSON closes. Each batch size runs unconstrained, then with the
// schema cold (just compiled: masks computed as states are first reached) and warm (the same
// requests again: every mask cached, the steady state of a schema in use, as GrammarCache keeps
// compiled grammars across requests). Prints the CPU model and ISA (the build's and the
// machine's), tokens/s and the ratios.
//
//   build/release/tools/bench_constrained_decoding [--model PATH] [--batch 1,16] [--requests 4,32]
//       [--max-tokens 48] [--threads N]
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "engine/chat_template.h"
#include "engine/engine.h"
#include "engine/fifo_policy.h"
#include "engine/grammar.h"
#include "engine/model.h"

namespace te = tiergate::engine;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kSchema =
    R"({"type":"object","additionalProperties":false,"required":["name","age","colour","toys"],)"
    R"("properties":{"name":{"type":"string","maxLength":24},"age":{"type":"integer","minimum":0,"maximum":30},)"
    R"("colour":{"enum":["black","white","ginger","tabby"]},)"
    R"("toys":{"type":"array","items":{"type":"string","maxLength":16},"maxItems":4}}})";

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown CPU";
}

// What the CPU offers among the ISA levels the kernels care about, from /proc/cpuinfo's flags.
std::string cpu_isa() {
  std::ifstream in("/proc/cpuinfo");
  std::set<std::string> flags;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    for (std::string w; words >> w;) flags.insert(w);
    break;
  }
  std::string out;
  for (const char* f : {"sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni"}) {
    if (flags.count(f)) out += std::string(out.empty() ? "" : " ") + f;
  }
  return out.empty() ? "none listed" : out;
}

const char* build_isa() {
#if defined(__AVX512F__)
  return "AVX-512";
#elif defined(__AVX2__)
  return "AVX2";
#else
  return "baseline x86-64";
#endif
}

std::vector<std::size_t> list_of(const std::string& text) {
  std::vector<std::size_t> out;
  std::stringstream s(text);
  for (std::string item; std::getline(s, item, ',');) out.push_back(static_cast<std::size_t>(std::atoll(item.c_str())));
  return out;
}

// CPU seconds of this process: on a machine others share, what our threads did rather than
// how long they waited for a core.
double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

struct Run {
  double seconds = 0, cpu = 0;
  std::size_t tokens = 0, requests = 0, steps = 0;
};

// Closed loop: `batch` in flight until `requests` have finished; returns the totals.
Run run(const te::Model& model, const std::vector<std::vector<te::TokenId>>& prompts, std::size_t batch,
        std::size_t requests, std::size_t max_tokens, std::size_t threads, std::shared_ptr<const te::Grammar> grammar) {
  te::EngineConfig config;
  config.threads = threads;
  config.device = te::Device::kCpu;
  config.max_running = batch;
  config.num_blocks = batch * ((prompts.front().size() + max_tokens) / config.block_size + 2) + 8;
  te::FifoPolicy fifo;
  std::size_t finished = 0, tokens = 0, submitted = 0;
  te::Engine eng(model, config, fifo, [&](te::RequestOutput&& o) {
    tokens += o.tokens.size();
    if (o.finish != te::FinishReason::kNone) ++finished;
  });
  te::SamplingParams p;
  p.temperature = 0.7f;  // sampled: each request writes its own answer
  p.max_tokens = static_cast<std::int64_t>(max_tokens);
  p.grammar = std::move(grammar);
  auto submit = [&] {
    const auto& prompt = prompts[submitted % prompts.size()];
    p.seed = submitted + 1;
    eng.submit({submitted + 1, prompt, p});
    fifo.enqueue(submitted + 1, prompt.size());
    ++submitted;
  };
  const auto t0 = Clock::now();
  const double c0 = cpu_seconds();
  for (std::size_t i = 0; i < std::min(batch, requests); ++i) submit();
  Run r;
  while (!eng.idle()) {
    eng.step();
    ++r.steps;
    while (submitted < requests && submitted - finished < batch) submit();
  }
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  r.cpu = cpu_seconds() - c0;
  r.tokens = tokens;
  r.requests = finished;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_path = TIERGATE_SOURCE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  std::string batches = "1,16", requests = "4,32";
  std::size_t max_tokens = 48, threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--model") model_path = value;
    else if (flag == "--batch") batches = value;
    else if (flag == "--requests") requests = value;
    else if (flag == "--max-tokens") max_tokens = static_cast<std::size_t>(std::atoll(value.c_str()));
    else if (flag == "--threads") threads = static_cast<std::size_t>(std::atoll(value.c_str()));
    else {
      std::cerr << "usage: bench_constrained_decoding [--model PATH] [--batch 1,16] [--requests 4,32] "
                   "[--max-tokens 48] [--threads N]\n";
      return 2;
    }
  }
  const std::vector<std::size_t> bs = list_of(batches), rs = list_of(requests);
  if (bs.empty() || bs.size() != rs.size() || max_tokens < 1) {
    std::cerr << "--batch and --requests take lists of the same length; --max-tokens at least 1\n";
    return 2;
  }
  const auto model = te::Model::load(model_path);
  const te::Tokenizer& tok = model->tokenizer();
  const te::ChatTemplate chat = te::ChatTemplate::from_template_text(model->chat_template());
  std::vector<std::vector<te::TokenId>> prompts;
  for (const char* animal : {"cat", "kitten", "house cat", "stray cat"}) {
    prompts.push_back(tok.encode(chat.render({{"user", std::string("Describe a ") + animal + " as JSON."}}), true));
  }
  // A fresh cache per batch size: its first schema run is cold (the masks of the states answers
  // reach are computed as they are reached), the second, with the same seeds, is the steady state
  // of a schema in use (every state's mask cached).
  std::printf("cpu: %s\nisa: build %s; cpu %s\n", cpu_model().c_str(), build_isa(), cpu_isa().c_str());
  std::printf("model %s, vocab %zu, up to %zu tokens per answer, temperature 0.7, closed loop\n",
              model->config().name.c_str(), tok.vocab_size(), max_tokens);
  std::printf("tokens per CPU second of this process (wall-clock tokens/s in brackets: others share this machine)\n");
  std::printf("batch  requests  free_tok/s       cold_tok/s       warm_tok/s       cold/free  warm/free  tok/req free,schema"
              "  compile_ms  dfa_states\n");
  for (std::size_t i = 0; i < bs.size(); ++i) {
    te::GrammarCache cache;
    const auto compiled_at = Clock::now();
    auto compiled = cache.get({te::GrammarSpec::Kind::kJsonSchema, kSchema, true, "response_format"}, tok);
    const double compile_ms = 1e3 * std::chrono::duration<double>(Clock::now() - compiled_at).count();
    if (auto* e = std::get_if<te::GrammarError>(&compiled)) {
      std::cerr << "schema: " << e->message << "\n";
      return 1;
    }
    const auto grammar = std::get<std::shared_ptr<const te::Grammar>>(compiled);
    const Run free = run(*model, prompts, bs[i], rs[i], max_tokens, threads, nullptr);
    const Run cold = run(*model, prompts, bs[i], rs[i], max_tokens, threads, grammar);
    const Run warm = run(*model, prompts, bs[i], rs[i], max_tokens, threads, grammar);
    auto cpu_tps = [](const Run& r) { return static_cast<double>(r.tokens) / r.cpu; };
    auto wall_tps = [](const Run& r) { return static_cast<double>(r.tokens) / r.seconds; };
    std::printf("%5zu  %8zu  %6.1f (%6.1f)  %6.1f (%6.1f)  %6.1f (%6.1f)  %9.3f  %9.3f  %8.1f,%5.1f  %10.1f  %10zu\n",
                bs[i], rs[i], cpu_tps(free), wall_tps(free), cpu_tps(cold), wall_tps(cold), cpu_tps(warm),
                wall_tps(warm), cpu_tps(cold) / cpu_tps(free), cpu_tps(warm) / cpu_tps(free),
                static_cast<double>(free.tokens) / static_cast<double>(free.requests),
                static_cast<double>(warm.tokens) / static_cast<double>(warm.requests), compile_ms, grammar->dfa_states());
    std::fflush(stdout);
  }
  std::printf("(x/free: 1.0 is no slowdown; the target is above 0.9 warm at batch 16)\n");
  return 0;
}
