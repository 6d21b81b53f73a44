// The FP8 tensors of a real safetensors file decode exactly.
//
// data/checkpoints/fluxml-dtypes was written by FluxML/SafeTensors.jl
// test/gendata.py with PyTorch: every tensor is its own draw, e.g.
// `torch.randn(shape, dtype=torch.float32).type(torch.float8_e4m3fn)`. So the
// F8_E4M3 and F8_E5M2 tensors are PyTorch casts of random F32 values that are
// NOT stored (the F32 tensor `float32_*` is another, independent draw). What
// holds, and is checked here: the bytes decode to the values PyTorch printed
// (hand-decoded below), each decoded value is finite and encodes back to the
// same byte (it is exactly representable), E4M3/E5M2 values are exact in
// BF16/F16 and survive CastBuffer round trips, and the sharded copy of the
// checkpoint holds the same bytes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "refit/core/quant/float_cast.h"
#include "refit/io/safetensors.h"

namespace refit::quant {
namespace {

namespace fs = std::filesystem;

fs::path FluxmlDir() {
  return fs::path(REFIT_DATA_ROOT) / "data" / "checkpoints" / "fluxml-dtypes";
}

io::Checkpoint OpenOrDie(const fs::path& path) {
  Result<io::Checkpoint> ckpt = io::Checkpoint::Open(path.string());
  EXPECT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  return std::move(ckpt).value();
}

std::vector<uint8_t> TensorBytes(const io::Checkpoint& ckpt,
                                 const std::string& name, DType dtype) {
  const io::TensorRef* t = ckpt.Find(name);
  if (t == nullptr) {
    ADD_FAILURE() << "no tensor " << name;
    return {};
  }
  EXPECT_EQ(t->info->dtype, dtype) << name;
  const auto* p = reinterpret_cast<const uint8_t*>(t->data);
  return std::vector<uint8_t>(p, p + t->info->nbytes);
}

std::vector<float> Decode(const std::vector<uint8_t>& bytes, DType dtype) {
  std::vector<float> out;
  for (uint8_t b : bytes) {
    out.push_back(dtype == DType::kF8E4M3 ? E4M3ToF32(b) : E5M2ToF32(b));
  }
  return out;
}

const char* const kShapes[] = {"3", "35", "357"};

TEST(CheckpointFp8Test, DecodesToTheValuesPyTorchStored) {
  const io::Checkpoint ckpt =
      OpenOrDie(FluxmlDir() / "non_sharded" / "model.safetensors");
  // Hand-decoded: 0xAE = 1.0101.110 = -1.75 * 2^-2; 0xA9 = 1.0101.001 =
  // -1.125 * 2^-2; 0xB8 = 1.0111.000 = -1.
  EXPECT_EQ(Decode(TensorBytes(ckpt, "float8_e4m3fn_3", DType::kF8E4M3),
                   DType::kF8E4M3),
            (std::vector<float>{-0.4375f, -0.28125f, -1.0f}));
  // 0xBA = 1.01110.10 = -1.5 * 2^-1; 0xB2 = 1.01100.10 = -1.5 * 2^-3.
  EXPECT_EQ(Decode(TensorBytes(ckpt, "float8_e5m2_3", DType::kF8E5M2),
                   DType::kF8E5M2),
            (std::vector<float>{-0.75f, -0.1875f, -0.75f}));
  // float8_e4m3fn_35 starts 0x40 (2.0), 0x30 (0.5), 0xAA (-0.3125).
  const std::vector<float> e4m3_35 = Decode(
      TensorBytes(ckpt, "float8_e4m3fn_35", DType::kF8E4M3), DType::kF8E4M3);
  ASSERT_EQ(e4m3_35.size(), 15u);
  EXPECT_EQ(e4m3_35[0], 2.0f);
  EXPECT_EQ(e4m3_35[1], 0.5f);
  EXPECT_EQ(e4m3_35[2], -0.3125f);
  // float8_e4m3fn_357 holds one subnormal, 0x81 = -2^-9.
  const std::vector<uint8_t> e4m3_357 =
      TensorBytes(ckpt, "float8_e4m3fn_357", DType::kF8E4M3);
  ASSERT_EQ(e4m3_357.size(), 105u);
  int subnormals = 0;
  for (uint8_t b : e4m3_357) {
    if ((b & 0x78) == 0 && (b & 0x07) != 0) {
      ++subnormals;
      EXPECT_EQ(b, 0x81);
      EXPECT_EQ(E4M3ToF32(b), -0x1p-9f);
    }
  }
  EXPECT_EQ(subnormals, 1);
}

TEST(CheckpointFp8Test, EveryValueIsFiniteAndEncodesBackToItsByte) {
  const io::Checkpoint ckpt =
      OpenOrDie(FluxmlDir() / "non_sharded" / "model.safetensors");
  for (const char* shape : kShapes) {
    for (DType dtype : {DType::kF8E4M3, DType::kF8E5M2}) {
      const std::string name =
          std::string(dtype == DType::kF8E4M3 ? "float8_e4m3fn_"
                                              : "float8_e5m2_") +
          shape;
      const std::vector<uint8_t> bytes = TensorBytes(ckpt, name, dtype);
      const std::vector<float> values = Decode(bytes, dtype);
      ASSERT_FALSE(values.empty()) << name;
      for (size_t i = 0; i < bytes.size(); ++i) {
        const float v = values[i];
        ASSERT_TRUE(std::isfinite(v)) << name << "[" << i << "]";
        EXPECT_LE(std::fabs(v), 4.0f) << name;  // randn draws
        for (Fp8Overflow mode :
             {Fp8Overflow::kNonSaturating, Fp8Overflow::kSaturate}) {
          const uint8_t back =
              dtype == DType::kF8E4M3 ? F32ToE4M3(v, mode) : F32ToE5M2(v, mode);
          ASSERT_EQ(back, bytes[i]) << name << "[" << i << "]";
        }
        // FP8 values are exact in BF16 and F16; E5M2 is F16's top byte.
        EXPECT_EQ(Bf16ToF32(F32ToBf16(v)), v) << name;
        EXPECT_EQ(F16ToF32(F32ToF16(v)), v) << name;
        if (dtype == DType::kF8E5M2) {
          EXPECT_EQ(F32ToF16(v), static_cast<uint16_t>(bytes[i] << 8));
        }
      }
      // The same through the bulk casts: F32 -> BF16 -> F16 -> F32.
      std::vector<uint16_t> bf16(values.size()), f16(values.size());
      std::vector<float> back(values.size());
      ASSERT_TRUE(CastBuffer(std::as_bytes(std::span(values)), DType::kF32,
                             std::as_writable_bytes(std::span(bf16)),
                             DType::kBF16)
                      .ok());
      ASSERT_TRUE(CastBuffer(std::as_bytes(std::span(bf16)), DType::kBF16,
                             std::as_writable_bytes(std::span(f16)),
                             DType::kF16)
                      .ok());
      ASSERT_TRUE(CastBuffer(std::as_bytes(std::span(f16)), DType::kF16,
                             std::as_writable_bytes(std::span(back)),
                             DType::kF32)
                      .ok());
      EXPECT_EQ(back, values) << name;
    }
  }
}

TEST(CheckpointFp8Test, Fp8TensorsAreIndependentDrawsNotCastsOfF32) {
  const io::Checkpoint ckpt =
      OpenOrDie(FluxmlDir() / "non_sharded" / "model.safetensors");
  const io::TensorRef* f32 = ckpt.Find("float32_3");
  ASSERT_NE(f32, nullptr);
  ASSERT_EQ(f32->info->dtype, DType::kF32);
  std::vector<float> x(3);
  std::memcpy(x.data(), f32->data, 12);
  // float32_3 = {0.0133, 0.582, 0.475}, all positive; float8_e4m3fn_3 is all
  // negative: it is not the E4M3 cast of float32_3.
  const std::vector<uint8_t> e4m3 =
      TensorBytes(ckpt, "float8_e4m3fn_3", DType::kF8E4M3);
  std::vector<uint8_t> cast;
  for (float v : x) cast.push_back(F32ToE4M3(v, Fp8Overflow::kNonSaturating));
  EXPECT_EQ(cast, (std::vector<uint8_t>{0x07, 0x31, 0x2F}));  // 0x07 subnormal
  EXPECT_NE(cast, e4m3);
}

TEST(CheckpointFp8Test, ShardedCopyHoldsTheSameBytes) {
  const io::Checkpoint whole =
      OpenOrDie(FluxmlDir() / "non_sharded" / "model.safetensors");
  const io::Checkpoint sharded = OpenOrDie(FluxmlDir() / "sharded");
  for (const char* shape : kShapes) {
    for (const std::string prefix : {"float8_e4m3fn_", "float8_e5m2_"}) {
      const DType dtype =
          prefix == "float8_e4m3fn_" ? DType::kF8E4M3 : DType::kF8E5M2;
      EXPECT_EQ(TensorBytes(sharded, prefix + shape, dtype),
                TensorBytes(whole, prefix + shape, dtype));
    }
  }
}

}  // namespace
}  // namespace refit::quant
