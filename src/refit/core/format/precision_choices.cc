#include "refit/core/format/precision_choices.h"

namespace refit {

namespace {

// `st` with the choice that gave the bad value named first.
Status ForChoice(const ChoiceName& name, std::string_view field, Status st) {
  if (st.ok()) return st;
  return Status(st.code(), name(field) + ": " + st.message());
}

Result<ConvertSide> ParseSide(const std::string& value) {
  if (value == "send") return ConvertSide::kSend;
  if (value == "recv") return ConvertSide::kRecv;
  return InvalidArgument("unknown value '" + value + "' (send or recv)");
}

}  // namespace

Result<PrecisionOptions> MakePrecisionOptions(const PrecisionChoices& c,
                                              const ChoiceName& name) {
  PrecisionOptions p;
  if (!c.dst_dtype.empty()) {
    REFIT_RETURN_IF_ERROR(
        ForChoice(name, "dst_dtype", ApplyDstDType(c.dst_dtype, p)));
  }
  for (const std::string& cast : c.casts) {
    Result<FormatRule> r = ParseCastRule(cast);
    REFIT_RETURN_IF_ERROR(ForChoice(name, "cast", r.status()));
    p.rules.push_back(*r);
  }
  Result<ConvertSide> cast_on = ParseSide(c.cast_on);
  REFIT_RETURN_IF_ERROR(ForChoice(name, "cast_on", cast_on.status()));
  p.cast_on = *cast_on;
  if (!c.quantize_on.empty()) {
    Result<ConvertSide> side = ParseSide(c.quantize_on);
    REFIT_RETURN_IF_ERROR(ForChoice(name, "quantize_on", side.status()));
    p.quantize_on = *side;
  }
  if (c.fp8_block <= 0) {
    return InvalidArgument(name("fp8_block") + ": " +
                           std::to_string(c.fp8_block) + " is not > 0");
  }
  p.fp8.block = {c.fp8_block, c.fp8_block};
  if (c.fp8_scale != "f32" && c.fp8_scale != "ue8m0") {
    return InvalidArgument(name("fp8_scale") + ": unknown value '" +
                           c.fp8_scale + "' (f32 or ue8m0)");
  }
  p.fp8.scale_format = c.fp8_scale == "ue8m0" ? quant::BlockScaleFormat::kUe8m0
                                              : quant::BlockScaleFormat::kF32;
  p.mxfp8_swizzled = c.mxfp8_swizzled;
  return p;
}

}  // namespace refit
