#include "gateway/generate_command.h"

#include <cstdlib>

#include "engine/chat_template.h"
#include "engine/engine.h"
#include "engine/fifo_policy.h"
#include "gateway/cli_args.h"

namespace tiergate::gateway {

std::string default_model_path() {
  if (const char* env = std::getenv("TIERGATE_MODEL")) return env;
  return "models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

namespace {

constexpr const char* kUsage =
    "usage: tiergate generate [--model PATH] --prompt TEXT [--chat] [--max-tokens N] [--temperature T]\n"
    "       [--top-p P] [--top-k K] [--min-p P] [--repetition-penalty R] [--presence-penalty P]\n"
    "       [--frequency-penalty F] [--seed S] [--stop TEXT]... [--n N] [--ignore-eos] [--threads N]\n"
    "       [--device auto|cpu|cuda]\n";

}  // namespace

int run_generate(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  try {
    const CliArgs a(args,
                    {"--model", "--prompt", "--max-tokens", "--temperature", "--top-p", "--top-k", "--min-p",
                     "--repetition-penalty", "--presence-penalty", "--frequency-penalty", "--seed", "--stop", "--n",
                     "--threads", "--device"},
                    {"--chat", "--ignore-eos"});
    if (!a.has("--prompt")) throw CliError("--prompt is required");
    const auto model = engine::Model::load(a.get("--model", default_model_path()));
    std::string prompt = a.get("--prompt", "");
    if (a.has("--chat")) {
      prompt = engine::ChatTemplate::from_template_text(model->chat_template()).render({{"user", prompt}});
    }
    const std::vector<engine::TokenId> tokens = model->tokenizer().encode(prompt, a.has("--chat"));
    engine::SamplingParams p;
    p.max_tokens = a.integer("--max-tokens", 128);
    p.temperature = static_cast<float>(a.number("--temperature", 0.0));
    p.top_p = static_cast<float>(a.number("--top-p", 1.0));
    p.top_k = static_cast<std::int32_t>(a.integer("--top-k", 0));
    p.min_p = static_cast<float>(a.number("--min-p", 0.0));
    p.repetition_penalty = static_cast<float>(a.number("--repetition-penalty", 1.0));
    p.presence_penalty = static_cast<float>(a.number("--presence-penalty", 0.0));
    p.frequency_penalty = static_cast<float>(a.number("--frequency-penalty", 0.0));
    if (a.has("--seed")) p.seed = static_cast<std::uint64_t>(a.integer("--seed", 0));
    p.stop = a.all("--stop");
    p.n = static_cast<std::int32_t>(a.integer("--n", 1));
    p.ignore_eos = a.has("--ignore-eos");
    if (auto bad = engine::validate(p, tokens.size(), model->config().context_length)) {
      err << "tiergate generate: --" << bad->param << ": " << bad->message << "\n";
      return 2;
    }
    engine::EngineConfig config;
    config.threads = a.count("--threads", 0);
    config.device = device_flag(a);
    config.num_blocks = (tokens.size() + static_cast<std::size_t>(p.max_tokens)) * static_cast<std::size_t>(p.n) /
                            config.block_size + 2 * static_cast<std::size_t>(p.n) + 2;
    engine::FifoPolicy fifo;
    std::vector<std::string> texts(static_cast<std::size_t>(p.n));
    engine::Engine eng(*model, config, fifo, [&](engine::RequestOutput&& o) {
      if (p.n == 1) {
        out << o.text << std::flush;
        if (o.finish != engine::FinishReason::kNone) out << "\n";
      } else {
        texts[static_cast<std::size_t>(o.index)] += o.text;
      }
    });
    eng.submit({1, tokens, p});
    fifo.enqueue(1, tokens.size());
    while (!eng.idle()) eng.step();
    for (std::size_t i = 0; p.n > 1 && i < texts.size(); ++i) out << "--- choice " << i << " ---\n" << texts[i] << "\n";
    return 0;
  } catch (const CliError& e) {
    err << "tiergate generate: " << e.what() << "\n" << kUsage;
    return 2;
  } catch (const std::exception& e) {
    err << "tiergate generate: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace tiergate::gateway
