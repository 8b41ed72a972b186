// Files that hold secrets (the API-keys file, the TLS private key): written owner-only (0600) from
// the moment they exist, never created with the umask's mode and narrowed afterwards; and a check
// that warns when such a file can be read by other users. Start-up and admin code; throws
// std::runtime_error naming the file.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace tiergate::gateway {

// Writes `contents` to `path` atomically: a fresh temporary file beside it, created 0600, then
// renamed over `path`. Creates missing parent directories. On failure nothing is left behind.
void write_private_file(const std::string& path, std::string_view contents);

// A warning naming the file and the fix when `path` is readable by group or others; nullopt when it
// is owner-only or absent.
std::optional<std::string> readable_by_others_warning(const std::string& path, std::string_view what);

}  // namespace tiergate::gateway
