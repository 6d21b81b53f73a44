// A destination format as a user spells it: `refit run --dst-dtype ... --cast
// ... --fp8-scale ...`, or the Python package's `transform` ("fp8-block", or
// a dict of the same choices). One parser for both, so that they accept the
// same values.
#ifndef REFIT_CORE_FORMAT_PRECISION_CHOICES_H_
#define REFIT_CORE_FORMAT_PRECISION_CHOICES_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "refit/core/format/dst_format.h"
#include "refit/core/status.h"

namespace refit {

struct PrecisionChoices {
  std::string dst_dtype;  ///< bf16|f16|f32|fp8-block|mxfp8; "" = source
  std::vector<std::string> casts;  ///< PATTERN=bf16|f16|f32
  std::string cast_on = "send";    ///< send or recv
  std::string quantize_on;         ///< "" (per format default), send or recv
  int64_t fp8_block = 128;         ///< fp8-block: block rows and columns
  std::string fp8_scale = "f32";   ///< f32 (amax/448) or ue8m0
  bool mxfp8_swizzled = false;     ///< MXFP8 scales in the 128x4 layout

  /// True when any choice asks for a destination format.
  bool converts() const { return !dst_dtype.empty() || !casts.empty(); }
};

/// How an error names a choice: receives the field name ("fp8_scale") and
/// returns the user's spelling of it ("--fp8-scale" on the command line).
using ChoiceName = std::function<std::string(std::string_view field)>;

/// The PrecisionOptions of `c` (ApplyDstDType, ParseCastRule, the sides,
/// block extents and scale rounding). Errors: kInvalidArgument "NAME: ..."
/// naming the bad choice as `name` spells it.
Result<PrecisionOptions> MakePrecisionOptions(const PrecisionChoices& c,
                                              const ChoiceName& name);

}  // namespace refit

#endif  // REFIT_CORE_FORMAT_PRECISION_CHOICES_H_
