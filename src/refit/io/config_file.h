// Reading a model's Hugging Face config.json.
#ifndef REFIT_IO_CONFIG_FILE_H_
#define REFIT_IO_CONFIG_FILE_H_

#include <string>

#include "refit/core/status.h"

namespace refit::io {

/// Text of `path`/config.json, or of `path` itself when it names a file.
/// Errors: kNotFound naming the file.
Result<std::string> ReadConfigText(const std::string& path);

}  // namespace refit::io

#endif  // REFIT_IO_CONFIG_FILE_H_
