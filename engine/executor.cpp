#include "engine/executor.h"

#include "kernels/check.h"

namespace tiergate::engine {

std::int32_t StepBatch::add_sequence(const std::vector<BlockId>& table) {
  TG_CHECK(table.size() <= max_blocks);  // set max_blocks to the longest table first
  const auto row = static_cast<std::int32_t>(block_tables.size() / max_blocks);
  block_tables.insert(block_tables.end(), table.begin(), table.end());
  block_tables.resize(block_tables.size() + (max_blocks - table.size()), -1);
  return row;
}

void StepBatch::add_token(TokenId token, std::int32_t position, std::int32_t seq_row, bool wants_logits) {
  if (wants_logits) logit_rows.push_back(static_cast<std::int32_t>(tokens.size()));
  tokens.push_back(token);
  positions.push_back(position);
  token_seq.push_back(seq_row);
}

}  // namespace tiergate::engine
