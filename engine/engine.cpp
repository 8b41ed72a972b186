#include "engine/engine.h"

#include <algorithm>
#include <random>
#include <stdexcept>

#include "engine/cpu_executor.h"
#include "kernels/check.h"
#ifdef TIERGATE_HAVE_CUDA
#include "engine/cuda_executor.h"
#include "kernels/cuda/device.h"
#endif

namespace tiergate::engine {

const char* to_string(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kNone: break;
  }
  return "";
}

struct Engine::Sequence {
  Sequence(SequenceId sid_, std::int32_t index_, std::vector<TokenId> tokens_, const SamplingParams& params,
           std::uint64_t seed, const Tokenizer& tokenizer)
      : sid(sid_), index(index_), tokens(std::move(tokens_)), sampler(params, seed, tokens), stop(params.stop),
        detok(tokenizer, !params.skip_special_tokens) {}

  SequenceId sid;
  std::int32_t index;
  std::vector<TokenId> tokens;  // prompt, then generated
  std::size_t computed = 0;     // tokens whose KV is in the cache
  bool has_blocks = false;
  std::size_t generated = 0;
  FinishReason finish = FinishReason::kNone;
  bool mask_pending = false;    // its grammar's mask for the next draw is still being computed: it rests
  Sampler sampler;
  StopMatcher stop;
  StreamingDetokenizer detok;
};

struct Engine::Request {
  EngineRequest request;
  std::uint64_t seed = 0;
  bool running = false;
  std::uint64_t admission = 0;
  bool forked = false;              // n > 1 choices created
  bool streamed = false;            // some output token has been reported
  std::size_t prompt_charged = 0;   // prompt tokens charged so far: recomputation below it is free
  std::vector<std::unique_ptr<Sequence>> seqs;
  // prompt_logprobs: tokens 1..scored of the prompt have their logprob in prompt_logprobs (a
  // preemption's recomputation does not score them again); sent with the first output.
  std::size_t scored = 0;
  std::vector<SampledToken> prompt_logprobs;

  bool scoring() const {
    return request.params.prompt_logprobs && scored + 1 < request.prompt.size();
  }

  bool done() const {
    return std::all_of(seqs.begin(), seqs.end(), [](const auto& s) { return s->finish != FinishReason::kNone; });
  }
};

namespace {

// The executor for config.device; sets config.num_blocks to the pool it made.
std::unique_ptr<Executor> make_executor(const Model& model, EngineConfig& config, std::unique_ptr<KvCache>& cpu_cache) {
  bool cuda = config.device == Device::kCuda;
#ifdef TIERGATE_HAVE_CUDA
  if (config.device == Device::kAuto) cuda = kernels::cuda::device_available();
  if (cuda) {
    auto executor = std::make_unique<CudaExecutor>(model, cuda_executor_options(config));
    config.num_blocks = executor->num_blocks();
    return executor;
  }
#else
  if (cuda) throw std::runtime_error("this build of tiergate has no CUDA backend (nvcc was not found at build time)");
#endif
  if (config.num_blocks == 0) config.num_blocks = 2048;
  cpu_cache = std::make_unique<KvCache>(model.config(), config.num_blocks, config.block_size, config.kv_dtype);
  return std::make_unique<CpuExecutor>(model, *cpu_cache, config.threads);
}

// Prompt tokens one step scores for a request (echo with logprobs): each is a row of vocab logits.
constexpr std::size_t kMaxScoredTokensPerStep = 64;

// Grammar-mask work (Grammar::prepare_mask's units: a DFA transition, or an NFA state visited
// making one) the engine thread does per step, all constrained sequences together, and the least
// one waiting sequence gets. About 2-5 ms on a 2-core x86 host (bench_constrained_decoding): a
// mask needing more is finished over the next steps while its sequence rests, so a tenant's
// costly grammar delays that tenant, not the batch.
constexpr std::size_t kMaskWorkPerStep = std::size_t{1} << 20;
constexpr std::size_t kMinMaskWorkPerSequence = std::size_t{1} << 14;

std::uint64_t choice_seed(std::uint64_t seed, std::int32_t index) {
  return seed ^ (0x9e3779b97f4a7c15ull * static_cast<std::uint64_t>(index + 1));
}

}  // namespace

Engine::Engine(const Model& model, EngineConfig config, SchedulingPolicy& policy, OutputSink sink)
    : model_(model),
      config_(config),
      policy_(policy),
      sink_(std::move(sink)),
      executor_(make_executor(model, config_, cpu_cache_)),
      blocks_(config_.num_blocks, config_.block_size) {}

Engine::~Engine() = default;

std::size_t Engine::max_request_tokens() const { return config_.num_blocks * config_.block_size; }

void Engine::submit(EngineRequest request) {
  std::lock_guard lock(inbox_mutex_);
  inbox_submit_.push_back(std::move(request));
}

void Engine::cancel(RequestId id) {
  std::lock_guard lock(inbox_mutex_);
  inbox_cancel_.push_back(id);
}

bool Engine::idle() const {
  std::lock_guard lock(inbox_mutex_);
  return requests_.empty() && inbox_submit_.empty() && inbox_cancel_.empty();
}

EngineStats Engine::stats() const {
  EngineStats s = stats_;
  s.running_requests = running_.size();
  s.running_sequences = 0;
  for (const auto& [order, r] : running_) {
    for (const auto& seq : r->seqs) s.running_sequences += seq->finish == FinishReason::kNone;
  }
  s.blocks = blocks_.stats();
  return s;
}

void Engine::drain_inbox(bool with_cancels) {
  std::vector<EngineRequest> submitted;
  std::vector<RequestId> cancelled;
  {
    std::lock_guard lock(inbox_mutex_);
    submitted.swap(inbox_submit_);
    if (with_cancels) cancelled.swap(inbox_cancel_);
  }
  for (EngineRequest& e : submitted) {
    auto r = std::make_unique<Request>();
    r->seed = e.params.seed ? *e.params.seed : std::random_device{}();
    r->seqs.push_back(std::make_unique<Sequence>(next_sequence_++, 0, e.prompt, e.params, choice_seed(r->seed, 0),
                                                 model_.tokenizer()));
    r->request = std::move(e);
    const RequestId id = r->request.id;
    TG_CHECK(requests_.emplace(id, std::move(r)).second);
  }
  for (RequestId id : cancelled) {
    auto it = requests_.find(id);
    if (it != requests_.end()) finish(*it->second, FinishReason::kCancelled);
  }
}

Engine::Request* Engine::find_started(RequestId id) {
  auto it = requests_.find(id);
  if (it != requests_.end()) return it->second.get();
  // Another thread may have submitted it and handed it to the policy after this step drained the
  // inbox: take the new submissions (not the cancels: this step's plan is being executed).
  drain_inbox(/*with_cancels=*/false);
  it = requests_.find(id);
  return it == requests_.end() ? nullptr : it->second.get();
}

bool Engine::start(Request& r) {
  std::vector<Sequence*> allocated;
  for (auto& seq : r.seqs) {
    if (seq->finish != FinishReason::kNone) continue;
    // A prompt still to be scored is computed whole: its logits are the scores.
    const auto cached = blocks_.allocate(seq->sid, seq->tokens, !r.scoring());
    if (!cached) {
      for (Sequence* s : allocated) {
        blocks_.release(s->sid);
        s->has_blocks = false;
      }
      return false;
    }
    seq->has_blocks = true;
    seq->computed = *cached;
    allocated.push_back(seq.get());
  }
  r.running = true;
  r.admission = admissions_++;
  running_[r.admission] = &r;
  return true;
}

void Engine::requeue(Request& r) {
  // What it takes to run again: every live sequence recomputed (cached prefix blocks may make it
  // cheaper), with room for its next token.
  std::size_t tokens = 0, blocks = 0;
  for (auto& seq : r.seqs) {
    if (seq->finish != FinishReason::kNone) continue;
    if (seq->has_blocks) {
      blocks_.release(seq->sid);  // full computed blocks stay in the prefix cache
      seq->has_blocks = false;
    }
    seq->computed = 0;
    tokens += seq->tokens.size();
    blocks += blocks_.blocks_needed(seq->tokens.size() + 1);
  }
  if (r.running) running_.erase(r.admission);
  r.running = false;
  policy_.preempted(r.request.id, tokens, blocks, r.streamed);
}

void Engine::preempt(Request& r) {
  ++stats_.preemptions;
  requeue(r);
}

bool Engine::prepare_masks() {
  masks_waiting_.clear();
  for (const auto& [order, r] : running_) {
    for (const auto& seq : r->seqs) {
      seq->mask_pending = false;
      if (seq->finish != FinishReason::kNone || !seq->has_blocks || !seq->sampler.constrained()) continue;
      std::size_t nothing = 0;
      if (!seq->sampler.prepare_mask(nothing)) masks_waiting_.push_back(seq.get());
    }
  }
  if (masks_waiting_.empty()) return false;
  // The step's mask work is shared out evenly, so each tenant's grammar advances every step and
  // none holds the others' step for longer than its share (plus one DFA transition).
  const std::size_t share = std::max(kMaskWorkPerStep / masks_waiting_.size(), kMinMaskWorkPerSequence);
  bool pending = false;
  for (Sequence* seq : masks_waiting_) {
    std::size_t budget = share;
    seq->mask_pending = !seq->sampler.prepare_mask(budget);
    pending |= seq->mask_pending;
    stats_.mask_waits += seq->mask_pending;
  }
  return pending;
}

// A request started this step was not running when prepare_masks() ran: a resumed one's state may
// still want its mask, which then waits for the next step's share rather than be computed here.
bool Engine::mask_ready(Sequence& seq) {
  if (seq.mask_pending) return false;
  std::size_t none = 0;
  if (seq.sampler.prepare_mask(none)) return true;
  seq.mask_pending = masks_pending_ = true;
  return false;
}

void Engine::list_running() {
  running_work_.clear();
  masks_pending_ = prepare_masks();
  for (const auto& [order, r] : running_) {
    RunningRequest w;
    w.id = r->request.id;
    w.first_token_pending = !r->streamed;
    for (const auto& seq : r->seqs) {
      if (seq->finish != FinishReason::kNone || !seq->has_blocks) continue;
      w.blocks += blocks_.block_table(seq->sid).size();
      if (seq->mask_pending) continue;
      const std::size_t pending = seq->tokens.size() - seq->computed;
      if (pending == 1 && seq->generated > 0) {
        ++w.decode_seqs;
      } else if (pending > 0) {
        ++w.prefill_seqs;
        w.prefill_tokens += pending;
      }
    }
    if (w.decode_seqs + w.prefill_seqs > 0) running_work_.push_back(w);  // finished ones are not candidates
  }
}

void Engine::execute_plan() {
  rows_.clear();
  for (RequestId id : plan_.preempt) {
    auto it = requests_.find(id);
    if (it != requests_.end() && it->second->running) preempt(*it->second);
  }
  // Starts, in order; the first that cannot get its blocks waits again, and so does every one
  // after it (the policy's order is never bypassed to fill a gap).
  std::vector<std::pair<Request*, const StepGrant*>> work;
  bool blocked = false;
  for (const StepGrant& g : plan_.start) {
    Request* r = find_started(g.id);
    if (!r) {  // cancelled before it started
      policy_.finished(g.id);
      continue;
    }
    if (r->running) {
      work.emplace_back(r, &g);
      continue;
    }
    if (blocked || !start(*r)) {
      blocked = true;
      requeue(*r);
      continue;
    }
    work.emplace_back(r, &g);
  }
  for (const StepGrant& g : plan_.run) {
    auto it = requests_.find(g.id);
    if (it != requests_.end() && it->second->running) work.emplace_back(it->second.get(), &g);
  }
  for (auto [r, g] : work) {
    std::size_t prefill = g->prefill_tokens;
    for (auto& seq : r->seqs) {
      if (seq->finish != FinishReason::kNone || !seq->has_blocks || !mask_ready(*seq)) continue;
      const std::size_t pending = seq->tokens.size() - seq->computed;
      if (pending == 1 && seq->generated > 0) {
        if (g->decode) rows_.push_back({r, seq.get(), seq->computed, seq->computed + 1});
        continue;
      }
      // A scored prompt goes in smaller chunks: each of its tokens is a row of logits.
      const std::size_t n = std::min({pending, prefill, r->scoring() ? kMaxScoredTokensPerStep : pending});
      if (n == 0) continue;
      rows_.push_back({r, seq.get(), seq->computed, seq->computed + n});
      prefill -= n;
    }
  }
}

void Engine::finish(Request& r, FinishReason reason) {
  auto report = [&](std::int32_t index, std::size_t generated) {
    RequestOutput out;
    out.id = r.request.id;
    out.index = index;
    out.finish = reason;
    out.prompt_tokens = r.request.prompt.size();
    out.completion_tokens = generated;
    sink_(std::move(out));
  };
  for (auto& seq : r.seqs) {
    if (seq->has_blocks) {
      blocks_.release(seq->sid);
      seq->has_blocks = false;
    }
    if (seq->finish == FinishReason::kNone) {
      seq->finish = reason;
      report(seq->index, seq->generated);
    }
  }
  // Choices that do not exist yet (n > 1 forks after the prompt) finish too: every choice the
  // client asked for gets its end.
  if (!r.forked) {
    for (std::int32_t c = 1; c < r.request.params.n; ++c) report(c, 0);
  }
  if (r.running) running_.erase(r.admission);
  policy_.finished(r.request.id);
  requests_.erase(r.request.id);  // r is gone after this line
}

void Engine::score_prompt(Request& r, std::size_t from, std::size_t to, std::size_t first_row, std::size_t vocab) {
  const std::vector<TokenId>& prompt = r.request.prompt;
  const auto k = static_cast<std::size_t>(r.request.params.top_logprobs);
  std::size_t logit_row = first_row;
  for (std::size_t p = std::max(from, r.scored); p < to && p + 1 < prompt.size(); ++p, ++logit_row) {
    TG_CHECK(p == r.scored && (logit_row + 1) * vocab <= sampled_.logits.size());
    const std::span<const float> logits = std::span<const float>(sampled_.logits).subspan(logit_row * vocab, vocab);
    SampledToken t;
    t.token = prompt[p + 1];
    t.logprob = token_logprob(logits, t.token);
    t.top = top_logprobs(logits, k);
    r.prompt_logprobs.push_back(std::move(t));
    ++r.scored;
  }
}

void Engine::emit_token(Request& r, Sequence& seq, const SampledToken& sampled) {
  const SamplingParams& params = r.request.params;
  const TokenId token = sampled.token;
  const bool grammar_over = seq.sampler.accept(token);  // the constrained output is complete (or cannot go on)
  seq.tokens.push_back(token);
  ++seq.generated;
  ++stats_.tokens_generated;
  r.streamed = true;
  policy_.charge(r.request.id, 0, 1);

  RequestOutput out;
  out.id = r.request.id;
  out.index = seq.index;
  out.tokens.push_back(token);
  if (params.logprobs || params.top_logprobs > 0) out.logprobs.push_back(sampled);
  if (seq.index == 0 && !r.prompt_logprobs.empty()) out.prompt_logprobs = std::move(r.prompt_logprobs);
  out.prompt_tokens = r.request.prompt.size();
  out.completion_tokens = seq.generated;

  const bool end_token = model_.tokenizer().is_end_of_generation(token);
  if (end_token && (!params.ignore_eos || grammar_over)) {
    seq.finish = FinishReason::kStop;
    out.text = seq.stop.push(seq.detok.flush()).emit + seq.stop.flush();
  } else {
    const StopMatcher::Result piece = seq.stop.push(seq.detok.push(token));
    out.text = piece.emit;
    if (piece.stopped) {
      seq.finish = FinishReason::kStop;
    } else if (grammar_over) {
      seq.finish = FinishReason::kStop;
      out.text += seq.stop.push(seq.detok.flush()).emit + seq.stop.flush();
    } else if (seq.generated >= static_cast<std::size_t>(params.max_tokens)) {
      seq.finish = FinishReason::kLength;
      out.text += seq.stop.push(seq.detok.flush()).emit + seq.stop.flush();
    }
  }
  out.finish = seq.finish;
  if (seq.finish != FinishReason::kNone && seq.has_blocks) {
    blocks_.release(seq.sid);
    seq.has_blocks = false;
  }
  sink_(std::move(out));
}

void Engine::fork_choices(Request& r, Sequence& first, std::vector<std::unique_ptr<Sequence>> children,
                          std::span<const SampledToken> sampled) {
  // n > 1: the other choices share the computed prompt's blocks (copy-on-write from here on).
  // Each drew its first token from its own seed on the same logits (step()).
  TG_CHECK(sampled.size() == children.size() + 1);
  r.forked = true;
  const std::size_t first_child = r.seqs.size();
  for (auto& child : children) {
    blocks_.fork(first.sid, child->sid);
    child->has_blocks = true;
    child->computed = first.computed;
    r.seqs.push_back(std::move(child));
  }
  emit_token(r, first, sampled[0]);
  for (std::size_t i = 1; i < sampled.size(); ++i) emit_token(r, *r.seqs[first_child + i - 1], sampled[i]);
}

bool Engine::step() {
  drain_inbox();
  list_running();
  std::size_t live = 0;
  for (const RunningRequest& w : running_work_) live += w.decode_seqs + w.prefill_seqs;
  // One block per running sequence stays in reserve for decode growth.
  const std::size_t available = blocks_.available_blocks();
  const StepLimits limits{config_.max_running, config_.token_budget, available > live ? available - live : 0,
                          config_.block_size};
  plan_.clear();
  policy_.plan_step(running_work_, limits, plan_);
  execute_plan();
  if (rows_.empty()) return masks_pending_;  // mask work was done, and more is to come
  const std::vector<Row>& rows = rows_;

  StepBatch batch;
  for (const Row& row : rows) batch.max_blocks = std::max(batch.max_blocks, blocks_.block_table(row.seq->sid).size());
  // Logit rows: each row's last token when it completes the sequence (its draw), and the prompt
  // positions a scoring request scores (position p's logits score token p + 1).
  std::vector<std::int32_t> draw_row(rows.size(), -1), score_row(rows.size(), -1);
  std::int32_t logit_rows = 0;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Row& row = rows[i];
    const std::int32_t seq_row = batch.add_sequence(blocks_.block_table(row.seq->sid));
    const bool scoring = row.seq->index == 0 && row.request->scoring();
    for (std::size_t p = row.from; p < row.to; ++p) {
      const bool last = p + 1 == row.seq->tokens.size();
      const bool score = scoring && p >= row.request->scored && p + 1 < row.request->request.prompt.size();
      if (score && score_row[i] < 0) score_row[i] = logit_rows;
      if (last) draw_row[i] = logit_rows;
      batch.add_token(row.seq->tokens[p], static_cast<std::int32_t>(p), seq_row, last || score);
      logit_rows += last || score;
    }
  }
  // The draws: one per sequence whose last token is computed this step, on its logit row; a
  // request that forks into n choices adds the other choices' first draws on the same row.
  draws_.clear();
  std::vector<std::vector<std::unique_ptr<Sequence>>> children(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Row& row = rows[i];
    if (score_row[i] >= 0) draws_.want_logits = true;  // the scores are read on the host
    if (row.to != row.seq->tokens.size()) continue;  // mid-prompt chunk: no draw
    const std::int32_t logit_row = draw_row[i];
    row.seq->sampler.add_draw(draws_, logit_row);
    Request& r = *row.request;
    if (!r.forked && r.request.params.n > 1) {
      for (std::int32_t c = 1; c < r.request.params.n; ++c) {
        children[i].push_back(std::make_unique<Sequence>(next_sequence_++, c, row.seq->tokens, r.request.params,
                                                         choice_seed(r.seed, c), model_.tokenizer()));
        children[i].back()->sampler.add_draw(draws_, logit_row);
      }
    }
  }
  executor_->forward_sampled(batch, draws_, sampled_);
  ++stats_.steps;

  const std::size_t vocab = model_.config().vocab_size;
  std::size_t draw = 0;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Row& row = rows[i];
    Sequence& seq = *row.seq;
    Request& r = *row.request;
    seq.computed = row.to;
    blocks_.mark_computed(seq.sid, seq.computed);
    if (seq.index == 0) {
      // Prompt tokens are charged the first time they are computed; recomputation after a
      // preemption (below the high-water mark, or of generated tokens) never is.
      const std::size_t upto = std::min(row.to, r.request.prompt.size());
      const std::size_t fresh = upto > std::max(row.from, r.prompt_charged) ? upto - std::max(row.from, r.prompt_charged) : 0;
      if (fresh > 0) {
        stats_.prompt_tokens_computed += fresh;
        policy_.charge(r.request.id, fresh, 0);
        r.prompt_charged = upto;
      }
    }
    if (score_row[i] >= 0) score_prompt(r, row.from, row.to, static_cast<std::size_t>(score_row[i]), vocab);
    if (row.to != seq.tokens.size()) continue;  // mid-prompt chunk: no draw
    const SampledToken sampled = seq.sampler.result(draws_, sampled_, draw++, vocab);
    if (children[i].empty()) {
      emit_token(r, seq, sampled);
      continue;
    }
    std::vector<SampledToken> all{sampled};
    for (const auto& child : children[i]) all.push_back(child->sampler.result(draws_, sampled_, draw++, vocab));
    fork_choices(r, seq, std::move(children[i]), all);
  }

  // Slots for the tokens just sampled; out of blocks means preempting the least important work.
  std::vector<std::pair<Request*, Sequence*>> growing;
  for (auto& [order, r] : running_) {
    for (auto& seq : r->seqs) {
      if (seq->finish == FinishReason::kNone && seq->has_blocks && blocks_.num_tokens(seq->sid) < seq->tokens.size()) {
        growing.emplace_back(r, seq.get());
      }
    }
  }
  for (auto [r, seq] : growing) {
    if (!r->running || !seq->has_blocks) continue;  // preempted for an earlier one
    const std::vector<TokenId> fresh(seq->tokens.begin() + static_cast<long>(blocks_.num_tokens(seq->sid)),
                                     seq->tokens.end());
    while (r->running) {
      if (auto copies = blocks_.append(seq->sid, fresh)) {
        executor_->copy_blocks(*copies);
        break;
      }
      // The policy names the victim among the requests still running (possibly this very one).
      list_running();
      auto victim = requests_.find(policy_.memory_victim(running_work_));
      preempt(victim != requests_.end() && victim->second->running ? *victim->second : *r);
    }
  }

  std::vector<Request*> done;
  for (auto& [id, r] : requests_) {
    if (r->done()) done.push_back(r.get());
  }
  for (Request* r : done) {
    if (r->running) running_.erase(r->admission);
    r->running = false;
    policy_.finished(r->request.id);
    requests_.erase(r->request.id);
  }
  return true;
}

}  // namespace tiergate::engine
